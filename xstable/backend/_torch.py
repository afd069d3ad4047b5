"""The PyTorch side of xstable's backend seam: autograd, `torch.compile` detection, DDP."""

import keras
import torch

from xstable.backend import _portable
from xstable.backend._portable import (  # noqa: F401  (the interface, re-exported)
    call_on_host_if_positive,
    counter_value_or_none,
    cross_replica_guarded_apply,
    jit_if_jax,
    replica_sum,
    replicas_in_sync,
    share_compiled_programs,
    update_persists,
    variable_values,
    zeros_for_missing,
)

__all__ = []

NAME = "torch"
STATELESS_TRAINING = False
HOST_CALLBACKS = False
# Keras trains eagerly on torch unless asked for `torch.compile`.
EAGER_BY_DEFAULT = True
COMPILES_FUNCTIONS = False
OPTIMIZERS_HAVE_STATELESS_APPLY = True
PROBES_BEFORE_COUNTING = False
# Ops yielding bool tensors are slow on CPU: count NaN/Inf with float arithmetic instead.
COUNTS_WITH_FLOAT_ARITHMETIC = True
ONE_HOT_OP_IS_FASTEST = False
ABS_AS_MAXIMUM = False
COND_AROUND_NAN_IMPUTATION = False
CROSSENTROPY_BY_AUTODIFF = False


# ---- runtime -----------------------------------------------------------------------------


def device_name():
    if torch.cuda.is_available():
        return f"gpu:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "cpu"


def disable_tf32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def train_step_mode(jit_compile):
    return "torch.compile" if jit_compile else "eager"


def compiles_train_step(model):
    return bool(getattr(model, "jit_compile", False))


# ---- host reads --------------------------------------------------------------------------


def is_concrete(tensor):
    return not torch.compiler.is_compiling()


def reads_without_waiting(tensor):
    # Eager torch on CPU runs ops synchronously in the calling thread: reading a scalar
    # waits for nothing. GPU streams would stall the host until the device caught up.
    return not torch.compiler.is_compiling() and tensor.device.type == "cpu"


# ---- compilation -------------------------------------------------------------------------


class CompiledFunction(_portable.CompiledFunction):
    """Always eager, like torch's `fit` (`traces` stays 0)."""

    def __init__(self, fn, variable_groups=(), eager_calls=None):
        super().__init__(fn, variable_groups, eager_calls=float("inf"))


# ---- gradients ---------------------------------------------------------------------------


def _zero_nonfinite(gradient):
    return torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)


def zero_nonfinite_gradient(x):
    # A `keras.ops.custom_gradient` is an `autograd.Function` called from Python both ways on
    # eager torch; a hook on an alias of `x` does the same in one native op, and a tensor that
    # needs no gradient (evaluation, `torch.no_grad`) is returned as it is.
    if isinstance(x, torch.Tensor) and not torch.compiler.is_compiling():
        if not x.requires_grad:
            return x
        alias = x.view_as(x)
        alias.register_hook(_zero_nonfinite)
        return alias
    return _portable.zero_nonfinite_gradient(x)


def value_and_gradients(fn, variables):
    variables = list(variables)
    tensors = [v.value for v in variables]
    with torch.enable_grad():
        value, aux = fn()
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
    return value, aux, zeros_for_missing(variables, grads)


def value_and_probe_gradients(fn, weight_values):
    weights = [torch.as_tensor(t).detach().requires_grad_(True) for t in weight_values]
    probes = []

    def make_probe(tensor):
        probe = torch.zeros_like(tensor, requires_grad=True)
        probes.append(probe)
        return probe

    with torch.enable_grad():
        loss, aux = fn(weights, make_probe)
        args = weights + probes
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, args, allow_unused=True)
        else:
            grads = [None] * len(args)
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(args, grads, strict=True)]
    aux = keras.tree.map_structure(
        lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux
    )
    return loss.detach(), aux, grads[: len(weights)], grads[len(weights) :]


# ---- gradient norms ----------------------------------------------------------------------


def global_norm(grads):
    # Each `keras.ops` call is a separate eager dispatch with a full temporary: one BLAS
    # `dot(g, g)` per gradient on CPU, and `torch._foreach_norm` (one fused multi-tensor kernel)
    # on other devices, instead of a square and a sum per gradient.
    tensors = [g for g in grads if g is not None]
    if not tensors:
        return torch.zeros((), dtype=torch.float32)
    tensors = [t.float() if t.dtype != torch.float32 else t for t in tensors]
    if all(t.device.type == "cpu" for t in tensors):
        flat = [t.reshape(-1) for t in tensors]
        return torch.sqrt(torch.stack([torch.dot(f, f) for f in flat]).sum())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def scale_all(grads, scale):
    # One `torch._foreach_mul` instead of a multiply per gradient.
    tensors = [g for g in grads if g is not None]
    scaled = iter(torch._foreach_mul(tensors, scale.to(tensors[0].dtype)) if tensors else [])
    return [None if g is None else next(scaled) for g in grads]


# ---- data parallelism --------------------------------------------------------------------


def _world_size():
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    return torch.distributed.get_world_size()


def global_mean_divisor(local_count):
    # DistributedDataParallel averages the gradients: the all-reduced count divided by the
    # world size makes the per-process losses average to the global mean.
    world_size = _world_size()
    if world_size == 1:
        return local_count
    import torch.distributed

    total = keras.ops.convert_to_tensor(local_count).detach().clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total / world_size
