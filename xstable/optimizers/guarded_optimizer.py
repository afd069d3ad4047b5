"""`GuardedOptimizer`: clipping and skipping of non-finite steps around any Keras optimizer."""

import contextlib
import copy
import math
import warnings

import keras
import numpy as np
from keras import ops

from xstable import _validation, backend
from xstable.errors import POLICIES, NonFiniteError, check_policy
from xstable.optimizers import clipping
from xstable.optimizers.guard_counters import COUNTER_NAMES
from xstable.runtime import active_device

__all__ = ["GuardedOptimizer", "ON_MAX_SKIPS_POLICIES", "SKIP_MODES", "find_guarded_optimizer"]

ON_MAX_SKIPS_POLICIES = POLICIES
# Names of earlier versions, accepted with a DeprecationWarning for one release.
_DEPRECATED_ON_MAX_SKIPS = {
    "backoff": (
        "replace",
        "`on_max_skips='backoff'` is deprecated: pass `on_max_skips='replace'`, which does "
        "the same (skip the step, back the learning rate off by `lr_backoff_factor`, go on).",
    ),
    "accept": (
        "accept",
        "`on_max_skips='accept'` is deprecated and will be removed: it applies a non-finite "
        "update, which writes NaN or inf into the weights. Pass `on_max_skips='replace'` to "
        "back the learning rate off and go on, or `'count'` to keep skipping.",
    ),
}
SKIP_MODES = ("auto", "select", "branch")

_GAVE_UP_MESSAGE = """\
GuardedOptimizer '{name}' skipped {consecutive} optimizer steps in a row because the gradients \
were not finite (NaN or inf), more than `max_consecutive_skips={limit}`. Weights and optimizer \
state are those of the last finite step; {skipped} steps were skipped in total; the last \
gradient norm was {norm}.

What to check:
1. The data: a NaN or inf in a batch (or in labels) poisons every gradient. Check the input \
pipeline with `numpy.isfinite` on a few batches.
2. The loss: log(0), division by zero, sqrt at 0 or exp overflow. Use a numerically safe loss \
(e.g. `from_logits=True`) or xstable's safe losses.
3. The learning rate: a rate that is too high makes weights, then activations, overflow. Lower \
it, or use `on_max_skips="replace"` to back it off automatically.
4. Mixed precision: float16 overflows above 65504; keep the loss and the last layer in float32.
To keep training anyway, pass `on_max_skips="warn"` or `"count"` (goes on skipping) or \
`max_consecutive_skips=None` (skips forever)."""

_UNCHECKED_MESSAGE = """\
GuardedOptimizer '{name}' has max_consecutive_skips={limit} and on_max_skips="{policy}", but a \
compiled training step cannot raise or warn: the error or warning comes from the host, from \
`xstable.callbacks.StabilityMonitor` (pass `callbacks=[xstable.callbacks.StabilityMonitor()]` \
to `fit`) or from calling `optimizer.check()` in your own loop. Without either, the steps past \
the limit are skipped without a word. Pass max_consecutive_skips=None (the default) to skip \
non-finite steps without a limit, or on_max_skips="replace" or "count"."""


def _check_positive_number(name, value, allow_none=True):
    return _validation.check_number(name, value, 0.0, low_inclusive=False, allow_none=allow_none)


def _check_on_max_skips(on_max_skips):
    if isinstance(on_max_skips, str) and on_max_skips in _DEPRECATED_ON_MAX_SKIPS:
        policy, message = _DEPRECATED_ON_MAX_SKIPS[on_max_skips]
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        return policy
    return check_policy(on_max_skips, ON_MAX_SKIPS_POLICIES, "on_max_skips")


def _check_learning_rate(optimizer):
    """Rejects a learning rate that can only write non-finite weights (NaN, inf) or none."""
    try:
        rate = float(np.asarray(ops.convert_to_numpy(optimizer.learning_rate)))
    except (TypeError, ValueError):
        return  # a callable rate that needs a training step to evaluate
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(
            "The inner optimizer's learning rate must be a finite number >= 0: a NaN or "
            "infinite rate turns the weights non-finite on the first step, and the guard "
            "would then skip every step after it. Received: "
            f"inner_optimizer.learning_rate={rate!r}. Set a finite rate, e.g. 1e-3."
        )


def find_guarded_optimizer(optimizer):
    """Returns the GuardedOptimizer in `optimizer` (itself or inside a LossScaleOptimizer).

    Args:
        optimizer: A Keras optimizer or `None`.

    Returns:
        The `GuardedOptimizer`, or `None` when there is none.
    """
    while optimizer is not None:
        if isinstance(optimizer, GuardedOptimizer):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


@keras.saving.register_keras_serializable(package="xstable")
class GuardedOptimizer(keras.optimizers.Optimizer):
    """Wraps a Keras optimizer: clips gradients and skips steps whose gradients are not finite.

    On each step the global L2 norm of the gradients is computed (and recorded in
    `grad_norm`). If it is NaN or inf, the step is skipped: the model weights and every
    variable of the inner optimizer (moments, its `iterations`, ...) keep exactly the bits
    they had. Otherwise the gradients are clipped (at most one clip mode) and handed to the
    inner optimizer.

    The decision never waits for the host where that would cost a sync: on JAX the inner
    optimizer's `stateless_apply` runs inside a device-side conditional (`lax.cond` under
    jit); on PyTorch accelerators (`skip_mode="select"`) the inner update is computed
    functionally and blended with the old values (a Python `if` on a tensor would wait for
    the device); on TensorFlow the update runs inside a graph `cond`.

    `iterations` is the inner optimizer's counter: it counts applied steps only, so learning
    rate schedules do not advance on skipped steps. Attempted steps are
    `iterations + skipped_steps`.

    By default (`max_consecutive_skips=None`) non-finite steps are skipped without limit:
    correct with no callback. After more than `max_consecutive_skips` non-finite steps in a
    row, `on_max_skips` decides, in the words every xstable guard uses (a non-finite step is
    never applied):

    - `"raise"` (default): the step is skipped and the optimizer is marked as given up; the
      error (`xstable.errors.NonFiniteError`, saying what to check) is raised on the host by
      `check()`, which `xstable.callbacks.StabilityMonitor` calls after every batch (it
      cannot be raised inside a compiled step). The monitor's own `policy` then decides:
      with `policy="replace"` it restores the last good state and lowers the rate.
    - `"warn"`: the step is skipped and `check()` emits one `RuntimeWarning` per run of
      skips past the limit; training goes on skipping.
    - `"replace"`: recover: the step is skipped, the effective learning rate is multiplied
      by `lr_backoff_factor` and the run of skips starts again.
    - `"count"`: the step is skipped and counted in `skipped_steps`, like every other one.

    `"backoff"` (now `"replace"`) and `"accept"` (applies the non-finite step) are the names
    of earlier versions; they still work, with a `DeprecationWarning`.

    With `lr_backoff_on_skip=True` every skipped step multiplies the effective learning
    rate by `lr_backoff_factor`; after `lr_recovery_steps` applied finite steps in a row it
    is divided by the factor again (up to the inner optimizer's own learning rate). The
    effective rate is `inner learning rate * lr_scale`.

    The state is the inner optimizer's plus scalars: `skipped_steps`, `consecutive_skips`,
    `good_steps`, `lr_scale`, `grad_norm` (the global gradient norm before clipping) and the
    `iteration`/`learning_rate` pair every Keras optimizer has (unused here). No copy of the
    weights or slots is kept.

    Args:
        inner_optimizer: `keras.optimizers.Optimizer` instance or name (e.g. `"adam"`). It
            must not clip by itself, accumulate gradients or use EMA.
        clipvalue: Float or `None`. Clip every gradient element to `[-clipvalue, clipvalue]`.
        clipnorm: Float or `None`. Clip each gradient to this L2 norm separately.
        global_clipnorm: Float or `None`. Clip all gradients together to this global norm.
        adaptive_clip: Float or `None`. Adaptive unit-wise clipping (NFNets' AGC): clip
            where `||g|| / max(||w||, adaptive_clip_eps)` exceeds this factor (0.01 is
            typical).
        adaptive_clip_eps: Float. Smallest weight norm used by `adaptive_clip`.
        max_consecutive_skips: Int or `None`. Non-finite steps in a row tolerated before
            `on_max_skips` applies; `None` (default) skips every non-finite step.
        on_max_skips: `"raise"`, `"warn"`, `"replace"` or `"count"` (see above).
        lr_backoff_factor: Float in (0, 1). Factor for learning-rate back-off.
        lr_backoff_on_skip: Bool. Back the learning rate off on every skipped step.
        lr_recovery_steps: Int or `None`. Applied finite steps in a row after which a
            backed-off learning rate grows back by `1 / lr_backoff_factor`; `None` never.
        skip_mode: `"auto"`, `"select"` or `"branch"`; PyTorch only. `"select"` computes the
            inner update functionally and keeps or drops it with `where` (no host sync, but
            Keras's fused `torch._foreach` Adam is bypassed and every state tensor is
            rewritten). `"branch"` runs the inner optimizer's own fused update behind a
            Python `if` on the finite flag (a device sync on GPU, free on CPU). `"auto"`:
            branch on CPU, select on accelerators. TensorFlow always uses a graph `cond`,
            JAX a device-side `lax.cond`.
        name: String, the optimizer's name.

    Raises:
        TypeError: If `inner_optimizer` is not an optimizer or a known name, or an argument
            has the wrong type.
        ValueError: If two clip modes are set, a norm or factor is not positive, the policy is
            unknown, the inner optimizer's learning rate is NaN, infinite or negative, or the
            inner optimizer clips, accumulates gradients or uses EMA.

    The counters are not in the `fit` logs unless asked for: list
    `xstable.optimizers.GuardCounters(optimizer)` in `compile(metrics=...)`, or pass
    `xstable.callbacks.StabilityMonitor()` to `fit`, which writes them into the logs.

    Example:

    ```python
    optimizer = xstable.optimizers.GuardedOptimizer(
        keras.optimizers.Adam(1e-3), global_clipnorm=1.0
    )
    model.compile(
        optimizer=optimizer,
        loss="mse",
        metrics=[xstable.optimizers.GuardCounters(optimizer)],
    )
    history = model.fit(x, y)
    history.history["skipped_steps"]   # also consecutive_skips, grad_norm, lr_scale
    ```
    """

    def __init__(
        self,
        inner_optimizer,
        clipvalue=None,
        clipnorm=None,
        global_clipnorm=None,
        adaptive_clip=None,
        adaptive_clip_eps=1e-3,
        max_consecutive_skips=None,
        on_max_skips="raise",
        lr_backoff_factor=0.5,
        lr_backoff_on_skip=False,
        lr_recovery_steps=100,
        skip_mode="auto",
        name=None,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(
                "GuardedOptimizer does not take the arguments "
                f"`{'`, `'.join(sorted(kwargs))}`. Received: {kwargs}. Set learning rate, "
                "weight decay and similar options on the `inner_optimizer`."
            )
        inner_optimizer = self._resolve_inner(inner_optimizer)
        clip_args = {
            "clipvalue": clipvalue,
            "clipnorm": clipnorm,
            "global_clipnorm": global_clipnorm,
            "adaptive_clip": adaptive_clip,
        }
        clip_args = {k: _check_positive_number(k, v) for k, v in clip_args.items()}
        chosen = {k: v for k, v in clip_args.items() if v is not None}
        if len(chosen) > 1:
            raise ValueError(
                "Only one of `clipvalue`, `clipnorm`, `global_clipnorm` and `adaptive_clip` "
                f"can be set. Received: {', '.join(f'{k}={v}' for k, v in chosen.items())}. "
                "Keep the one you need."
            )
        adaptive_clip_eps = _check_positive_number("adaptive_clip_eps", adaptive_clip_eps, False)
        max_consecutive_skips = _validation.check_int(
            "max_consecutive_skips", max_consecutive_skips, 1, allow_none=True
        )
        on_max_skips = _check_on_max_skips(on_max_skips)
        lr_backoff_factor = _validation.check_number(
            "lr_backoff_factor",
            lr_backoff_factor,
            0.0,
            1.0,
            low_inclusive=False,
            high_inclusive=False,
            meaning=" (it multiplies the learning rate on back-off; try 0.5)",
        )
        lr_backoff_on_skip = _validation.check_bool("lr_backoff_on_skip", lr_backoff_on_skip)
        lr_recovery_steps = _validation.check_int(
            "lr_recovery_steps", lr_recovery_steps, 1, allow_none=True
        )
        _validation.check_one_of("skip_mode", skip_mode, SKIP_MODES)

        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = inner_optimizer
        self.clipvalue = clip_args["clipvalue"]
        self.clipnorm = clip_args["clipnorm"]
        self.global_clipnorm = clip_args["global_clipnorm"]
        self.adaptive_clip = clip_args["adaptive_clip"]
        self.adaptive_clip_eps = adaptive_clip_eps
        self.max_consecutive_skips = max_consecutive_skips
        self.on_max_skips = on_max_skips
        self.lr_backoff_factor = lr_backoff_factor
        self.lr_backoff_on_skip = lr_backoff_on_skip
        self.lr_recovery_steps = lr_recovery_steps
        self.skip_mode = skip_mode
        # Whether something on the host calls `check()` (StabilityMonitor sets it).
        self._host_checks = False
        self._warned_unchecked = False
        self._warned_this_run = False
        # Whether a `GuardCounters` metric reads the counters after each step (it says so
        # when it is made for this optimizer); torch's CPU branch then hands them over as
        # host floats.
        object.__setattr__(self, "_counters_wanted", False)
        # For GuardCounters: whether a step ran since the metric last read the counters,
        # and the traced values of that step on JAX.
        self._set_step_counters(False, None)
        # Inside a LossScaleOptimizer (mixed precision), which may skip a step before the
        # guard runs, and on JAX runs the guard inside its own `lax.cond`. Set by
        # `GuardCounters` and `StabilityMonitor` when they see the outer optimizer.
        object.__setattr__(self, "_wrapped", False)

    @staticmethod
    def _resolve_inner(inner_optimizer):
        if isinstance(inner_optimizer, str):
            try:
                inner_optimizer = keras.optimizers.get(inner_optimizer)
            except ValueError as error:
                raise ValueError(
                    f"`inner_optimizer` names no Keras optimizer. "
                    f"Received: inner_optimizer={inner_optimizer!r}. Use e.g. 'adam', 'sgd', "
                    "or pass an optimizer instance."
                ) from error
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "`inner_optimizer` must be a `keras.optimizers.Optimizer` instance or its "
                f"name. Received: inner_optimizer={inner_optimizer!r} of type "
                f"{type(inner_optimizer).__name__}."
            )
        if isinstance(inner_optimizer, (keras.optimizers.LossScaleOptimizer, GuardedOptimizer)):
            raise ValueError(
                "`inner_optimizer` cannot be a LossScaleOptimizer or another "
                f"GuardedOptimizer. Received: inner_optimizer={inner_optimizer.name!r}. Wrap "
                "the other way round: LossScaleOptimizer(GuardedOptimizer(...)), which "
                "`compile` does by itself under the 'mixed_float16' policy."
            )
        for arg in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(inner_optimizer, arg, None) is not None:
                raise ValueError(
                    f"The inner optimizer clips gradients itself (`{arg}="
                    f"{getattr(inner_optimizer, arg)}`), after the guard's check. Set "
                    f"`{arg}` on the GuardedOptimizer instead and leave it None on the inner "
                    "optimizer."
                )
        _check_learning_rate(inner_optimizer)
        if inner_optimizer.gradient_accumulation_steps or inner_optimizer.use_ema:
            raise ValueError(
                "GuardedOptimizer does not support inner optimizers with "
                "`gradient_accumulation_steps` or `use_ema` yet. Received: "
                f"gradient_accumulation_steps={inner_optimizer.gradient_accumulation_steps}, "
                f"use_ema={inner_optimizer.use_ema}."
            )
        return inner_optimizer

    # ----------------------------------------------------------------- state

    def build(self, var_list):
        if self.built:
            return
        int_zero = keras.initializers.Zeros()
        self.skipped_steps = self.add_variable(
            (), initializer=int_zero, dtype="int", aggregation="none", name="skipped_steps"
        )
        self.consecutive_skips = self.add_variable(
            (), initializer=int_zero, dtype="int", aggregation="none", name="consecutive_skips"
        )
        self.good_steps = self.add_variable(
            (), initializer=int_zero, dtype="int", aggregation="none", name="good_steps"
        )
        self.lr_scale = self.add_variable(
            (), initializer="ones", dtype="float32", aggregation="none", name="lr_scale"
        )
        self.grad_norm = self.add_variable(
            (), initializer=int_zero, dtype="float32", aggregation="none", name="grad_norm"
        )
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        """The inner optimizer's learning rate (before any back-off)."""
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def effective_learning_rate(self):
        """The learning rate applied now: the inner optimizer's times `lr_scale`."""
        if not self.built:
            return self.inner_optimizer.learning_rate
        return ops.multiply(self.inner_optimizer.learning_rate, self.lr_scale)

    @property
    def iterations(self):
        """Applied steps (the inner optimizer's counter); skipped steps do not count."""
        return self.inner_optimizer.iterations

    @property
    def _backs_off(self):
        return self.lr_backoff_on_skip or self.on_max_skips == "replace"

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    # ----------------------------------------------------------- the guard

    def _clip(self, grads, weights, norm):
        """The gradients to apply: clipped as configured (`norm` is their global norm)."""
        if self.global_clipnorm is not None:
            return clipping.clip_by_global_norm(grads, self.global_clipnorm, norm)
        if self.clipvalue is not None:
            return clipping.clip_by_value(grads, self.clipvalue)
        if self.clipnorm is not None:
            return clipping.clip_by_norm(grads, self.clipnorm)
        if self.adaptive_clip is not None:
            return clipping.adaptive_clip(
                grads, weights, self.adaptive_clip, self.adaptive_clip_eps
            )
        return grads

    def _guard(self, grads, weights, norm=None):
        """Clips, decides and updates the counters. Returns (grads, apply, lr_scale)."""
        norm, apply, lr_scale = self._decide(grads, norm)
        return self._clip(grads, weights, norm), apply, lr_scale

    def _decide(self, grads, norm=None):
        """Decides whether to apply and updates the counters. Returns (norm, apply, lr_scale).

        JAX's `stateless_apply` clips inside the branch that applies (`_clip` there):
        computed before its `lax.cond`, the clipped gradients are the `cond`'s operands, which
        XLA must write out in full instead of fusing the scale into the inner update.
        """
        if norm is None:
            norm = clipping.global_norm(grads)
        finite = ops.isfinite(norm)

        counter_dtype = self.consecutive_skips.dtype
        zero = ops.zeros((), dtype=counter_dtype)
        one = ops.ones((), dtype=counter_dtype)
        consecutive = ops.where(finite, zero, ops.add(self.consecutive_skips.value, one))
        apply = finite
        limit = self.max_consecutive_skips
        over_limit = None
        if limit is not None:
            over_limit = ops.greater(consecutive, limit)
            if self.on_max_skips == "accept":
                apply = ops.logical_or(finite, over_limit)
            elif self.on_max_skips == "replace":
                consecutive = ops.where(over_limit, zero, consecutive)
        skipped = ops.where(apply, zero, one)

        # This step runs at the scale decided by earlier steps; changes apply from the next.
        # (A copy: on torch `.value` is the storage that the assign below overwrites.)
        step_lr_scale = ops.copy(self.lr_scale.value)
        lr_scale = step_lr_scale
        if self._backs_off:
            factor = self.lr_backoff_factor
            back_off = ops.logical_not(finite) if self.lr_backoff_on_skip else None
            if self.on_max_skips == "replace" and over_limit is not None:
                back_off = over_limit if back_off is None else ops.logical_or(back_off, over_limit)
            good = ops.where(finite, ops.add(self.good_steps.value, one), zero)
            if self.lr_recovery_steps is not None:
                recover = ops.greater_equal(good, self.lr_recovery_steps)
                good = ops.where(recover, zero, good)
                lr_scale = ops.where(
                    recover, ops.minimum(ops.divide(lr_scale, factor), 1.0), lr_scale
                )
            if back_off is not None:
                lr_scale = ops.where(back_off, ops.multiply(lr_scale, factor), lr_scale)
            self.good_steps.assign(good)
            self.lr_scale.assign(lr_scale)

        self.consecutive_skips.assign(consecutive)
        self.skipped_steps.assign(ops.add(self.skipped_steps.value, skipped))
        self.grad_norm.assign(norm)
        return norm, apply, step_lr_scale

    @contextlib.contextmanager
    def _scaled_inner_learning_rate(self, lr_scale):
        """Makes the inner optimizer read `its learning rate * lr_scale` for one step.

        Scaling the rate itself (not the update) keeps back-off exact for every optimizer,
        including decoupled weight decay. Keras optimizers accept a callable rate, so the
        original (variable, schedule or callable) is wrapped and restored afterwards.
        """
        if not self._backs_off:
            yield
            return
        inner = self.inner_optimizer
        original = inner._learning_rate
        # Read before swapping: the rate for this step (a schedule at the current iteration).
        rate = inner.learning_rate
        scaled = ops.multiply(rate, ops.cast(lr_scale, keras.backend.standardize_dtype(rate.dtype)))

        def scaled_rate():
            return scaled

        object.__setattr__(inner, "_learning_rate", scaled_rate)
        try:
            yield
        finally:
            object.__setattr__(inner, "_learning_rate", original)

    # ------------------------------------------------------------- applying

    def _warn_if_raise_cannot_happen(self):
        # Runs in Python: once per trace on TF and JAX, every step on torch.
        if (
            self.on_max_skips in ("raise", "warn")
            and self.max_consecutive_skips is not None
            and not self._host_checks
            and not self._warned_unchecked
        ):
            self._warned_unchecked = True
            warnings.warn(
                _UNCHECKED_MESSAGE.format(
                    name=self.name, limit=self.max_consecutive_skips, policy=self.on_max_skips
                ),
                RuntimeWarning,
                stacklevel=3,
            )

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return
        self._warn_if_raise_cannot_happen()
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `trainable_variables`, the optimizer must "
                    "already be built. Call `optimizer.build(trainable_variables)` first."
                )
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                self.build(trainable_variables)
        if backend.STATELESS_TRAINING:
            self._apply_through_stateless(grads, trainable_variables)
        elif backend.EAGER_BY_DEFAULT:
            # The torch CPU branch's common case knows the counters on the host already.
            self._set_step_counters(True, self._torch_apply(grads, trainable_variables))
            return
        else:
            self._graph_apply(grads, trainable_variables)
        self._set_step_counters(True, None)

    def _graph_apply(self, grads, trainable_variables, norm=None):
        # TensorFlow: its optimizers write through `tf.Variable`s (not the Keras state
        # mapping), so the inner update cannot be computed functionally; a graph `cond` costs
        # no host synchronisation there. Also torch's "branch" mode.
        if backend.replicas_in_sync() > 1:
            # tf.distribute hands each replica its own gradients: decide once, on the
            # all-reduced gradients, so every replica skips (or steps) together.
            def inner_apply(shares, lr_scale):
                with self._scaled_inner_learning_rate(lr_scale):
                    self.inner_optimizer.apply(shares, trainable_variables)

            backend.cross_replica_guarded_apply(
                grads,
                trainable_variables,
                guard=lambda global_grads: self._guard(global_grads, trainable_variables),
                inner_apply=inner_apply,
            )
            return
        # Clipped before the `cond` here: on TF, clipping inside the branch measured no gain
        # (paired A/B, docs/guarded-optimizer.md), unlike JAX's `stateless_apply` below.
        grads, apply, lr_scale = self._guard(grads, trainable_variables, norm)

        def inner_step():
            with self._scaled_inner_learning_rate(lr_scale):
                self.inner_optimizer.apply(grads, trainable_variables)

        ops.cond(apply, inner_step, lambda: None)

    def _torch_skip_mode(self):
        if self.skip_mode != "auto":
            return self.skip_mode
        # On CPU the tensor already lives on the host: reading the flag costs nothing, and
        # the branch keeps Keras's fused in-place update (measured 1.5x cheaper than select).
        return "branch" if active_device() == "cpu" else "select"

    def _torch_apply(self, grads, trainable_variables):
        """Applies on torch; returns the counters as Python floats when known on the host."""
        if self._torch_skip_mode() == "branch":
            if backend.replicas_in_sync() > 1:
                self._graph_apply(grads, trainable_variables)
                return None
            return self._torch_branch_apply(grads, trainable_variables)
        # Select: no host sync. The inner update is computed functionally with the
        # optimizer's own `update_step` under a StatelessScope (Keras's torch optimizers
        # update in place in their fused path, so that path is bypassed) and written back
        # with a select.
        grads, apply, lr_scale = self._guard(grads, trainable_variables)
        inner = self.inner_optimizer
        pairs = [(g, v) for g, v in zip(grads, trainable_variables, strict=True) if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        state = [v for _, v in pairs] + inner.variables
        old_values = [v.value for v in state]
        with keras.StatelessScope(state_mapping=list(zip(state, old_values, strict=True))) as scope:
            with self._scaled_inner_learning_rate(lr_scale):
                learning_rate = inner.learning_rate
                loss_scale = inner.loss_scale_factor
                step_grads = [g if loss_scale is None else g / loss_scale for g, _ in pairs]
                step_vars = [v for _, v in pairs]
                if inner.weight_decay is not None:
                    for variable in step_vars:
                        if inner._use_weight_decay(variable):
                            rate = ops.cast(learning_rate, variable.dtype)
                            decay = ops.cast(inner.weight_decay, variable.dtype)
                            variable.assign(variable - variable * decay * rate)
                for grad, variable in zip(step_grads, step_vars, strict=True):
                    inner.update_step(grad, variable, learning_rate)
                for variable in step_vars:
                    if variable.constraint is not None:
                        variable.assign(variable.constraint(variable))
                inner.iterations.assign_add(1)
        for variable, old in zip(state, old_values, strict=True):
            new = scope.get_current_value(variable)
            if new is None or new is old:
                continue
            variable.assign(ops.where(apply, new, old))

    def _torch_branch_apply(self, grads, trainable_variables):
        """torch "branch" mode: decide on the host, and do only the work the decision needs.

        Eager torch runs every `keras.ops` call as a separate dispatch, so the ~15 scalar ops of `_guard` that keep the counters cost as much as the
        global norm itself. The branch reads the finite flag on the host anyway; when the
        step is finite and no learning-rate back-off is configured (the common case), the
        counters' new values are known without computing them: `consecutive_skips` becomes 0,
        `skipped_steps` is unchanged. A clip scale that is exactly 1 (norm within the limit)
        is not multiplied in: `g * 1.0 == g` bit for bit. Every other case goes through
        `_guard`, so the results are identical to the general path.

        Returns the counters for the logs as Python floats in that common case, else None
        (`GuardCounters` then reads the variables).
        """
        norm = clipping.global_norm(grads)
        # One host read decides both questions (a float32 scalar, read exactly): on eager
        # torch an `isfinite` and the clip scale's `maximum` and `divide` would be three
        # more dispatches and a second host read.
        norm_value = float(norm)
        if self._backs_off or not math.isfinite(norm_value):
            self._graph_apply(grads, trainable_variables, norm)
            return None
        if self.global_clipnorm is not None:
            # The scale `c / max(norm, c)` (float32 `c`) is exactly 1 unless norm > c.
            if norm_value > float(np.float32(self.global_clipnorm)):
                grads = clipping.clip_by_global_norm(grads, self.global_clipnorm, norm)
        else:
            grads = self._clip(grads, trainable_variables, norm)
        if int(self.consecutive_skips.value) != 0:
            self.consecutive_skips.assign(ops.zeros((), dtype=self.consecutive_skips.dtype))
        self.grad_norm.assign(norm)
        self.inner_optimizer.apply(grads, trainable_variables)
        if not self._counters_wanted:
            return None
        # What the logs show, as Python floats read here (two scalar reads, free on CPU),
        # instead of four device copies in `GuardCounters.result()` that Keras's
        # `pythonify_logs` then converts one by one.
        return {
            "skipped_steps": float(self.skipped_steps.value),
            "consecutive_skips": 0.0,
            "grad_norm": norm_value,
            "lr_scale": float(self.lr_scale.value),
        }

    def _apply_through_stateless(self, grads, trainable_variables):
        new_weights, new_state = self.stateless_apply(
            [v.value for v in self.variables], grads, [v.value for v in trainable_variables]
        )
        for variable, value in zip(trainable_variables, new_weights, strict=True):
            variable.assign(value)
        for variable, value in zip(self.variables, new_state, strict=True):
            variable.assign(value)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        self._warn_if_raise_cannot_happen()
        if not self.built:
            raise ValueError(
                "To call `stateless_apply`, GuardedOptimizer must be built (its variables "
                "created). Build it with `optimizer.build(trainable_variables)`."
            )
        own = self._variables
        inner = self.inner_optimizer
        own_values = list(optimizer_variables[: len(own)])
        inner_values = list(optimizer_variables[len(own) :])
        mapping = (
            list(zip(own, own_values, strict=True))
            + list(zip(inner.variables, inner_values, strict=True))
            + list(zip(self._trainable_variables, trainable_variables, strict=True))
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            weights = [v.value for v in self._trainable_variables]
            inner_values = [v.value for v in inner.variables]
            grads = list(grads)
            norm, apply, lr_scale = self._decide(grads)

            def inner_step():
                clipped = self._clip(grads, weights, norm)
                with self._scaled_inner_learning_rate(lr_scale):
                    return inner.stateless_apply(inner_values, clipped, weights)

            # A device-side conditional (`lax.cond` under jit), not a select over every
            # weight and slot: with `where(apply, new, old)` the old buffers stay alive next
            # to the new ones, and XLA copies the donated weights and slots each step
            # (measured +30 % bytes and 1.09x a plain Adam train step on CPU).
            new_weights, new_inner = ops.cond(
                apply, inner_step, lambda: (list(weights), list(inner_values))
            )
            new_own = [scope.get_current_value(v) for v in own]
        # The counters after this step, for GuardCounters in the same traced train step
        # (the variables themselves hold the trainer's detached or trace-time values).
        # Not inside a LossScaleOptimizer: there this runs inside its `lax.cond`, and the
        # values would be tracers of that branch, not of the step.
        if not self._wrapped:
            by_variable = {id(v): value for v, value in zip(own, new_own, strict=True)}
            self._set_step_counters(
                True, {name: by_variable[id(getattr(self, name))] for name in COUNTER_NAMES}
            )
        return list(new_weights), new_own + list(new_inner)

    # ------------------------------------------------------------ reporting

    def _take_step_counters(self):
        """The counters after the latest step, once per step; None when no step ran."""
        if not self.built:
            return None
        applied = self._step_applied
        if not applied:
            return None
        values = self._step_values
        self._forget_step_counters()
        if values is None:
            values = {name: getattr(self, name).value for name in COUNTER_NAMES}
        return values

    def _peek_step_counters(self):
        """The counters after the latest step, without marking them read; None if none ran."""
        if not self.built:
            return None
        if not self._step_applied:
            return None
        if self._step_values is not None:
            return self._step_values
        return {name: getattr(self, name).value for name in COUNTER_NAMES}

    def _forget_step_counters(self):
        self._set_step_counters(False, None)

    def _set_step_counters(self, applied, values):
        # Plain attributes: Keras's tracker would wrap a dict of tracers.
        object.__setattr__(self, "_step_applied", applied)
        object.__setattr__(self, "_step_values", values)

    def stats(self):
        """Returns the guard's counters as Python numbers (reads them from the device).

        Returns:
            Dict with `skipped_steps`, `consecutive_skips`, `grad_norm` (last global
            gradient norm, before clipping) and `lr_scale`. Empty before the first build.
        """
        if not self.built:
            return {}
        return {
            "skipped_steps": int(ops.convert_to_numpy(self.skipped_steps.value)),
            "consecutive_skips": int(ops.convert_to_numpy(self.consecutive_skips.value)),
            "grad_norm": float(ops.convert_to_numpy(self.grad_norm.value)),
            "lr_scale": float(ops.convert_to_numpy(self.lr_scale.value)),
        }

    def gave_up(self):
        """Whether more than `max_consecutive_skips` non-finite steps came in a row."""
        if not self.built or self.max_consecutive_skips is None:
            return False
        if self.on_max_skips == "replace":
            return False
        consecutive = int(ops.convert_to_numpy(self.consecutive_skips.value))
        return consecutive > self.max_consecutive_skips

    def check(self):
        """Raises (`"raise"`) or warns (`"warn"`) when the limit of skips was passed.

        Compiled steps cannot raise, so the host calls this (`StabilityMonitor` does after
        every batch). Reading the counter waits for the device.

        Raises:
            NonFiniteError: When `on_max_skips="raise"` and more than
                `max_consecutive_skips` non-finite steps came in a row.
        """
        self._host_checks = True
        if self.on_max_skips not in ("raise", "warn"):
            return
        if not self.gave_up():
            self._warned_this_run = False
            return
        stats = self.stats()
        message = _GAVE_UP_MESSAGE.format(
            name=self.name,
            consecutive=stats["consecutive_skips"],
            limit=self.max_consecutive_skips,
            skipped=stats["skipped_steps"],
            norm=stats["grad_norm"],
        )
        if self.on_max_skips == "raise":
            raise NonFiniteError(message)
        if not self._warned_this_run:
            self._warned_this_run = True
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    # -------------------------------------------------------- serialization

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "clipvalue": self.clipvalue,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "adaptive_clip": self.adaptive_clip,
            "adaptive_clip_eps": self.adaptive_clip_eps,
            "max_consecutive_skips": self.max_consecutive_skips,
            "on_max_skips": self.on_max_skips,
            "lr_backoff_factor": self.lr_backoff_factor,
            "lr_backoff_on_skip": self.lr_backoff_on_skip,
            "lr_recovery_steps": self.lr_recovery_steps,
            "skip_mode": self.skip_mode,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # Written by earlier versions, whose counters reached the logs by themselves; they
        # are now listed as a metric (`GuardCounters`) or logged by `StabilityMonitor`.
        config.pop("log_counters", None)
        # `keras.optimizers.deserialize` maps built-in optimizers to the active backend's
        # class; a file saved on torch names the torch Adam module.
        inner = keras.optimizers.deserialize(
            copy.deepcopy(config.pop("inner_optimizer")), custom_objects=custom_objects
        )
        return cls(inner, **config)
