"""What the global gradient norm costs inside an eager torch training step, by how it is taken.

The guard of `GuardedOptimizer` on torch costs what one read of every gradient for the global
norm costs (`probe_guarded_apply_torch.py`). This probe times, in plain torch (no Keras), a
training step of the `bench_optimizers.py` MLP (256 -> 3 x 512 relu -> 1, batch 256, MSE:
zero the gradients, forward, backward) followed by one of:

- nothing (the baseline);
- `torch._foreach_norm` of the gradients, then the norm of the norms (xstable until
  2026-12-03);
- one BLAS `torch.dot(g, g)` per gradient, summed, square root (xstable since then, on CPU);
- the same dots computed in `register_post_accumulate_grad_hook`s during the backward pass,
  while each gradient is fresh in cache, and read afterwards (validated by identity and
  version, as a guard would have to).

Each variant's norm is read on the host (`float`), as the guard's torch branch does. Variants
run in a random order per round; "extra" is the median per-round difference to the baseline.

    python benchmarks/probe_torch_norm_forms.py [--rounds 300]
"""

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ["KERAS_BACKEND"] = "torch"  # print_header reads the versions through keras

import _harness  # noqa: E402
import torch  # noqa: E402


def _mlp():
    layers = [torch.nn.Linear(256, 512), torch.nn.ReLU()]
    for _ in range(2):
        layers += [torch.nn.Linear(512, 512), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(512, 1))


def _foreach_norm(grads):
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _dot_norm(grads):
    return torch.sqrt(torch.stack([torch.dot(g.reshape(-1), g.reshape(-1)) for g in grads]).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    _harness.print_header("probe_torch_norm_forms", f"rounds={args.rounds}, 3 steps per block")
    torch.manual_seed(0)
    x, y = torch.randn(256, 256), torch.randn(256, 1)
    plain, hooked = _mlp(), _mlp()
    hooked.load_state_dict(plain.state_dict())
    squares = {}

    def record_square(parameter):
        grad = parameter.grad
        squares[id(parameter)] = (grad, grad._version, torch.dot(grad.reshape(-1), grad.reshape(-1)))

    for parameter in hooked.parameters():
        parameter.register_post_accumulate_grad_hook(record_square)

    def hook_norm(model, grads):
        found = []
        for parameter, grad in zip(model.parameters(), grads, strict=True):
            held, version, square = squares[id(parameter)]
            if held is not grad or version != grad._version:
                raise RuntimeError("a hook-recorded square does not belong to this gradient")
            found.append(square)
        return torch.sqrt(torch.stack(found).sum())

    variants = {
        "backward only": (plain, None),
        "+ torch._foreach_norm": (plain, lambda m, g: _foreach_norm(g)),
        "+ one torch.dot per gradient": (plain, lambda m, g: _dot_norm(g)),
        "+ dots in post-accumulate hooks": (hooked, hook_norm),
    }

    def step(model, norm):
        for parameter in model.parameters():
            parameter.grad = None
        ((model(x) - y) ** 2).mean().backward()
        if norm is not None:
            float(norm(model, [p.grad for p in model.parameters()]))

    for model, norm in variants.values():
        for _ in range(20):
            step(model, norm)
    times = {name: [] for name in variants}
    names = list(variants)
    for _ in range(args.rounds):
        random.shuffle(names)
        for name in names:
            model, norm = variants[name]
            start = time.perf_counter()
            for _ in range(3):
                step(model, norm)
            times[name].append((time.perf_counter() - start) / 3)
    base = times["backward only"]
    for name, values in times.items():
        extra = statistics.median([a - b for a, b in zip(values, base, strict=True)])
        print(f"  {name:34s} {statistics.median(values) * 1e6:7.0f} us per step, "
              f"extra {extra * 1e6:+5.0f} us")
    reference = _foreach_norm([p.grad for p in plain.parameters()])
    print(f"  norms: foreach {float(reference):.9g}, dot {float(_dot_norm([p.grad for p in plain.parameters()])):.9g}")


if __name__ == "__main__":
    main()
