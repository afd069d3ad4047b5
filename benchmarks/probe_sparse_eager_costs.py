"""What the sparse cross-entropy's eager label check and one-hot cost on eager torch.

Three timings, each a median of repeated calls (not a training step; quoted in
docs/safe-losses.md and `xstable/losses/_safe_crossentropy_base.py`):

1. The eager label check of 512 int32 labels: as a device mask (`>=`, `<`, `&`, `~`,
   `any` and its host read) and as one host copy counted with NumPy.
2. The class ids of the one-hot comparison, built per call (`arange`, `reshape`).
3. A loss-only loop, forward and backward of 512x10 softmax outputs: Keras's
   `SparseCategoricalCrossentropy`, the safe loss, and with `--against REV` the safe loss as
   it was at that revision; printed as the extra over Keras per call.

    KERAS_BACKEND=torch python benchmarks/probe_sparse_eager_costs.py [--against 0ae343a]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402
import _xstable_at_revision  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from xstable import losses as xstable_losses  # noqa: E402


def _us_per_call(fn, calls, repeats=7):
    for _ in range(calls // 10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None, help="also time the safe loss at this git revision")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    if keras.config.backend() != "torch":
        raise SystemExit("Run with KERAS_BACKEND=torch (this probe times eager torch).")
    import torch

    _harness.print_header("probe_sparse_eager_costs", f"calls={args.calls}")
    rng = np.random.default_rng(0)
    labels = torch.tensor(rng.integers(0, 10, 512).astype("int32"))

    def device_mask_check():
        return bool(ops.convert_to_numpy(ops.any(~((labels >= 0) & (labels < 10)))))

    def host_check():
        host = ops.convert_to_numpy(labels)
        return np.count_nonzero((host < 0) | (host >= 10))

    print("1. eager label check, 512 int32 labels (us per call)")
    print(f"   device mask + any + host read  {_us_per_call(device_mask_check, args.calls):7.1f}")
    print(f"   host copy + NumPy count        {_us_per_call(host_check, args.calls):7.1f}")
    class_ids = _us_per_call(lambda: ops.reshape(ops.arange(10, dtype="int32"), [1, 10]), args.calls)
    print(f"2. class ids per call (arange + reshape): {class_ids:.1f} us")

    logits = torch.tensor(rng.normal(size=(512, 10)).astype("float32"), requires_grad=True)
    losses = {"keras": keras.losses.SparseCategoricalCrossentropy()}
    losses["safe"] = xstable_losses.SafeSparseCategoricalCrossentropy()
    if args.against:
        before = _xstable_at_revision.import_xstable_at(args.against)
        losses[f"safe at {args.against}"] = before.losses.SafeSparseCategoricalCrossentropy()

    def step(loss):
        loss(labels, torch.softmax(logits, -1)).backward()

    print("3. loss-only loop, forward + backward, 512x10 softmax (us per call; 3 passes)")
    for _ in range(3):
        timed = {name: _us_per_call(lambda loss=loss: step(loss), args.calls // 4) for name, loss in losses.items()}
        extra = ", ".join(
            f"{name} {value - timed['keras']:+.1f}" for name, value in timed.items() if name != "keras"
        )
        print(f"   keras {timed['keras']:.1f}; extra over keras: {extra}")


if __name__ == "__main__":
    main()
