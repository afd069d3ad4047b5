"""PyTorch-only: the global gradient norm and its clip in few eager dispatches.

`keras.ops` needs two eager ops per gradient for a norm (square, sum) and one per gradient for
the clip scale; with torch running eagerly each is a separate dispatch and a full temporary.
Here the norm is one BLAS `dot` per gradient on CPU (`torch._foreach_norm` elsewhere, see
`global_norm`) and the clip one `torch._foreach_mul`, which is what keeps the guard's cost
near a plain Adam step on torch. Same results as the `keras.ops` path
(NaN/inf propagate), tested through `tests/optimizers/test_clipping.py` on torch.
"""

import torch

__all__ = []


def global_norm(grads):
    """`sqrt(sum of every gradient's squared entries)` in float32 (inf when that overflows).

    On CPU, one BLAS `dot(g, g)` per gradient, cheaper than `torch._foreach_norm`, whose CPU
    version is a loop of per-tensor norms. Elsewhere (CUDA) `_foreach_norm` is one fused multi-tensor kernel instead
    of one launch per gradient, and is kept.
    """
    tensors = [g for g in grads if g is not None]
    if not tensors:
        return torch.zeros((), dtype=torch.float32)
    tensors = [t.float() if t.dtype != torch.float32 else t for t in tensors]
    if all(t.device.type == "cpu" for t in tensors):
        flat = [t.reshape(-1) for t in tensors]
        return torch.sqrt(torch.stack([torch.dot(f, f) for f in flat]).sum())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def scale_all(grads, scale):
    tensors = [g for g in grads if g is not None]
    scaled = iter(torch._foreach_mul(tensors, scale.to(tensors[0].dtype)) if tensors else [])
    return [None if g is None else next(scaled) for g in grads]
