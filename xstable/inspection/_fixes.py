"""One-line fix suggestions for each kind of non-finite location."""

__all__ = []

_SINGULAR_BACKWARD = (
    "An op with an infinite derivative at a point (sqrt, log, pow, norm or division at 0) sits "
    "in this layer: replace the singular input before the op, then select (the 'double where', "
    "e.g. ops.sqrt(ops.where(x > 0, x, 1.0)) then ops.where(x > 0, ..., 0.0))."
)


def suggest_fix(stage, tensor, layer_class=None, magnitudes=()):
    """Returns one line saying what most often fixes a non-finite value found here.

    `layer_class` is the class name of the layer found responsible, if any.
    """
    kind = layer_class or ""
    largest = max((value for _, value in magnitudes), default=0.0)
    if stage == "input":
        return (
            "Clean the data: drop or impute the listed rows (np.nan_to_num, or a "
            "xstable.layers.FiniteCheck(policy='replace') right after the input)."
        )
    if stage == "target":
        if tensor == "sample_weight":
            return "Fix the sample weights of the listed rows; they must be finite."
        return "Drop or fix the listed rows of y; targets must be finite."
    if stage == "forward":
        if tensor == "weight":
            return (
                "The weights are already non-finite: restore the last good weights (e.g. "
                "xstable.callbacks.StabilityMonitor) and lower the learning rate or clip gradients."
            )
        if largest > 1e30 or kind in ("Dense", "Conv1D", "Conv2D", "Conv3D", "EinsumDense"):
            return (
                f"Activations overflow before/inside `{kind or 'this layer'}` (max |value| "
                f"{largest:.3g}): standardise the inputs, lower the learning rate, or add "
                "normalization (LayerNormalization/BatchNormalization) before it."
            )
        return (
            f"`{kind or 'This layer'}` computes a NaN/Inf from finite inputs (log/sqrt of a "
            "negative or zero, exp overflow, 0/0): guard the op's domain, or use a safe op."
        )
    if stage == "loss":
        return (
            "The loss is non-finite for finite predictions: use from_logits=True with a linear "
            "output, or a safe loss that clips its argument (log(0), targets outside the range "
            "the loss accepts)."
        )
    if stage == "backward":
        if layer_class is None:
            return (
                "The loss has an infinite derivative at these predictions (e.g. log(p) at p=0, "
                "sqrt at 0): use a loss computed from logits or clip its argument."
            )
        return _SINGULAR_BACKWARD
    if stage == "update":
        return (
            "Gradients are finite but the update is not: lower the learning rate, clip "
            "gradients (optimizer clipnorm=1.0) or raise the optimizer's epsilon."
        )
    return ""
