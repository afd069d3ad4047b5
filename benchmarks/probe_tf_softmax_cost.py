"""What one graph `Softmax` op costs on TF's CPU build, against plain ops on the same tensor.

Times a chain of `--chain` identical ops inside one `tf.function` (each op reads the previous
one's output, so they run one after another) on a `[512, 10]` float32 tensor, the output of
`bench_losses.py`'s classifier, and prints microseconds per op: `tf.nn.softmax` (which TF's
oneDNN build runs as `_MklSoftmax`), the plain-op softmax the safe cross-entropies use on TF
(`xstable/losses/_backend_tf_softmax.py`), and `tf.exp` for scale. Run it twice, the second
time with `TF_ENABLE_ONEDNN_OPTS=0`, to see the oneDNN kernel's share.

    KERAS_BACKEND=tensorflow python benchmarks/probe_tf_softmax_cost.py [--chain 100] [--calls 50]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xstable.losses import _backend_tf_softmax  # noqa: E402


def _plain_softmax(z):
    # The recomputation itself, on a tensor that is not a Softmax op's output.
    return _backend_tf_softmax._softmax(z)


def _chain(op, length):
    @tf.function
    def chained(z):
        for _ in range(length):
            z = op(z)
        return z

    return chained


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=100, help="ops per call")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per op")
    args = parser.parse_args()
    z = tf.constant(np.random.default_rng(0).normal(size=(512, 10)).astype(np.float32))
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    print(f"TF {tf.__version__}, TF_ENABLE_ONEDNN_OPTS={onednn}, [512, 10] float32")
    for name, op in (
        ("tf.nn.softmax (graph Softmax op)", tf.nn.softmax),
        ("plain-op softmax (_backend_tf_softmax)", _plain_softmax),
        ("tf.exp", tf.exp),
    ):
        chained = _chain(op, args.chain)
        chained(z).numpy()
        start = time.perf_counter()
        for _ in range(args.calls):
            out = chained(z)
        out.numpy()
        per_op = (time.perf_counter() - start) / args.calls / args.chain * 1e6
        print(f"  {name:42s} {per_op:7.1f} us per op")


if __name__ == "__main__":
    main()
