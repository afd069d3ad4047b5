"""What a host callback in a jitted step costs on JAX: why FiniteCheck's `raise` is dearer there.

FiniteCheck's raise/warn policies reach the host from `jax.jit` code through
`lax.cond(count > 0, jax.debug.callback, ...)`: the callback itself runs only when something
is non-finite. This probe measures what its mere presence in the compiled step costs, with no
callback ever firing (JAX only; one process):

    python benchmarks/probe_jax_host_callback.py

1. Dispatch: how long `f(w)` takes to return, against how long until its result is ready,
   for a computation of a few hundred ms with and without a never-firing callback. Without one, JAX returns
   at once (asynchronous dispatch); with one, it returns only when the computation is done.
2. Per call, a tiny jitted function (64x64): with and without the callback, waiting for each
   result, and dispatching 500 calls before waiting once.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ["KERAS_BACKEND"] = "jax"  # print_header reads the versions through keras

import _harness  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def _on_host(count):
    print("non-finite values:", count)


def _with_check(fn, check):
    def checked(*args):
        out = fn(*args)
        if check:
            count = jnp.sum(~jnp.isfinite(out)).astype(jnp.float32)
            jax.lax.cond(
                count > 0, lambda c: jax.debug.callback(_on_host, c), lambda c: None, count
            )
        return out

    return jax.jit(checked)


def _chain(w):
    h = w
    for _ in range(5):
        h = jnp.tanh(h @ w)
    return h


def _small(w, x):
    return jnp.mean(jnp.tanh(x @ w))


def main():
    _harness.print_header("probe_jax_host_callback", "jax only")
    w = jnp.ones((1500, 1500)) * 1e-3
    print("1. a jitted computation (5 chained 1500x1500 matmuls), one call after warm-up:")
    for check in (False, True):
        f = _with_check(_chain, check)
        jax.block_until_ready(f(w))
        start = time.perf_counter()
        result = f(w)
        returned = time.perf_counter()
        jax.block_until_ready(result)
        ready = time.perf_counter()
        label = "with a never-firing callback" if check else "plain                       "
        print(f"   {label}: call returned after {1e3 * (returned - start):7.1f} ms, "
              f"result ready after {1e3 * (ready - start):7.1f} ms")
    w, x = jnp.ones((64, 64)) * 1e-2, jnp.ones((32, 64))
    print("2. a tiny jitted function (64x64), microseconds per call (median of 5 x 500 calls):")
    for check in (False, True):
        f = _with_check(_small, check)
        for _ in range(50):
            jax.block_until_ready(f(w, x))
        waited, queued = [], []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(500):
                jax.block_until_ready(f(w, x))
            waited.append((time.perf_counter() - start) / 500 * 1e6)
            start = time.perf_counter()
            for _ in range(500):
                result = f(w, x)
            jax.block_until_ready(result)
            queued.append((time.perf_counter() - start) / 500 * 1e6)
        label = "with a never-firing callback" if check else "plain                       "
        print(f"   {label}: {statistics.median(waited):7.1f} us waiting for each result, "
              f"{statistics.median(queued):7.1f} us dispatching ahead")


if __name__ == "__main__":
    main()
