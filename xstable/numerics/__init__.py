"""Safe numerics: the right value where defined, a finite documented value where not, and a
finite, correct gradient for every finite input, identically on TensorFlow, PyTorch and JAX.

Every function here is built from `keras.ops` with the "double where" (replace the singular
input before the operation, select after it), so it works eagerly and inside `jit`.
"""

from xstable.numerics.finiteness import all_finite, count_nonfinite
from xstable.numerics.safe_divide import safe_divide
from xstable.numerics.safe_exp import safe_exp
from xstable.numerics.safe_log import safe_log
from xstable.numerics.safe_logsumexp import safe_logsumexp
from xstable.numerics.safe_norm import safe_norm
from xstable.numerics.safe_pow import safe_pow
from xstable.numerics.safe_sqrt import safe_sqrt

__all__ = [
    "all_finite",
    "count_nonfinite",
    "safe_divide",
    "safe_exp",
    "safe_log",
    "safe_logsumexp",
    "safe_norm",
    "safe_pow",
    "safe_sqrt",
]
