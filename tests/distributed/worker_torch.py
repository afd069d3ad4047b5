"""PyTorch worker: a DistributedDataParallel recipe with a Keras model, 2 CPU processes (gloo).

Keras's torch backend has no distribution API, and `model.fit` cannot wrap the model in DDP.
The recipe is a custom loop: `DistributedDataParallel(keras_model)` for the forward and
backward pass (DDP averages the gradients across processes in `backward()`), then the Keras
optimizer's `apply`. Run by tests/distributed/test_ddp_torch.py as
`python -m tests.distributed.worker_torch`. Process group on 127.0.0.1 only.
"""

import os

from tests.distributed._launch import REPLICAS, emit_result

os.environ["KERAS_BACKEND"] = "torch"

import multiprocessing  # noqa: E402
import socket  # noqa: E402

import keras  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from tests.distributed import _cases  # noqa: E402
from tests.distributed._proposed_fixes import GlobalMeanSafeLoss  # noqa: E402
from xstable.optimizers import GuardedOptimizer  # noqa: E402

TORCH_CASES = [
    _cases.CASES[name]
    for name in (
        "plain_clean",
        "plain_nan",
        "guarded_clean",
        "guarded_nan",
        "safe_loss_nan",
        "finite_check_replace",
    )
] + [
    # skip_mode="auto" is "branch" on CPU; "select" is the accelerator path.
    _cases.Case(
        "guarded_nan_select",
        "x",
        lambda: GuardedOptimizer(
            keras.optimizers.Adam(0.05), global_clipnorm=0.5, skip_mode="select"
        ),
        counters=_cases.CASES["guarded_nan"].counters,
    ),
    _cases.Case(
        "safe_loss_nan_global_mean_fix",
        "y",
        lambda: keras.optimizers.Adam(0.05),
        make_loss=lambda: GlobalMeanSafeLoss("mse"),
        metrics=lambda loss: loss.metrics,
        readouts=_cases.CASES["safe_loss_nan"].readouts,
    ),
]
SHARD = _cases.GLOBAL_BATCH // REPLICAS


def train_loop(case, initial, rank=None):
    """Custom loop; with `rank`, on that rank's shard through DDP. Returns a result dict."""
    model = _cases.build_model(first_layer=case.make_first_layer and case.make_first_layer())
    model.set_weights(initial[case.name])
    forward = model if rank is None else torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = case.make_loss()
    if loss_fn == "mse":
        loss_fn = keras.losses.MeanSquaredError()
    optimizer = case.make_optimizer()
    optimizer.build(model.trainable_variables)
    x, y = _cases.make_data(case.poison)
    rows = slice(None) if rank is None else slice(rank * SHARD, (rank + 1) * SHARD)
    losses = []
    for step in range(_cases.STEPS):
        batch = slice(step * _cases.GLOBAL_BATCH, (step + 1) * _cases.GLOBAL_BATCH)
        x_batch = torch.as_tensor(x[batch][rows])
        y_batch = torch.as_tensor(y[batch][rows])
        for variable in model.trainable_variables:
            variable.value.grad = None
        loss = loss_fn(y_batch, forward(x_batch))
        loss.backward()
        losses.append(float(loss.detach()))
        grads = [v.value.grad for v in model.trainable_variables]
        with torch.no_grad():
            optimizer.apply(grads, model.trainable_variables)
    model.optimizer = optimizer  # so that case.counters(model) finds it
    model.loss = loss_fn
    readouts = {k: float(keras.ops.convert_to_numpy(v)) for k, v in case.readouts(model).items()}
    if rank is not None:
        # The recipe's way to a global count: metrics are per process under DDP.
        for label, value in list(readouts.items()):
            total = torch.tensor(value)
            dist.all_reduce(total)
            readouts[f"{label}_all_reduced"] = float(total)
    return {
        "weights": _cases.flat(
            [keras.ops.convert_to_numpy(v.value) for v in model.trainable_weights]
        ),
        "counters": {
            k: float(keras.ops.convert_to_numpy(v.value)) for k, v in case.counters(model).items()
        },
        "losses": losses,
        "readouts": readouts,
    }


def rank_main(rank, port, initial_weights, queue):
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=REPLICAS
        )
        results = {}
        for case in TORCH_CASES:
            try:
                results[case.name] = train_loop(case, initial_weights, rank)
            except Exception as error:
                results[case.name] = {"error": f"{type(error).__name__}: {error}"[:3000]}
        dist.destroy_process_group()
        queue.put((rank, results))
    except Exception as error:
        queue.put((rank, {"error": f"{type(error).__name__}: {error}"}))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    # One thread per process: the ranks share 2 cores with everything else, and forking
    # after the intra-op pool has started can deadlock.
    torch.set_num_threads(1)
    initial = {
        case.name: _cases.build_model(
            first_layer=case.make_first_layer and case.make_first_layer()
        ).get_weights()
        for case in TORCH_CASES
    }
    # fork: the ranks inherit the imported torch and keras instead of importing them again.
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    port = free_port()
    ranks = [
        context.Process(target=rank_main, args=(r, port, initial, queue), daemon=True)
        for r in range(REPLICAS)
    ]
    for process in ranks:
        process.start()
    per_rank = dict(queue.get(timeout=540) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    cases = {}
    for case in TORCH_CASES:
        single = train_loop(case, initial)
        replicas = [per_rank[r].get(case.name, per_rank[r]) for r in range(REPLICAS)]
        errors = [r["error"] for r in replicas if "error" in r]
        distributed = (
            {"error": errors[0]}
            if errors
            else {
                "replica_weights": [r["weights"] for r in replicas],
                "counters": {k: [r["counters"][k] for r in replicas] for k in single["counters"]},
                "losses": [r["losses"] for r in replicas],
                "readouts": [r["readouts"] for r in replicas],
            }
        )
        cases[case.name] = {"single": single, "distributed": distributed}
    emit_result({"world_size": REPLICAS, "cases": cases})


if __name__ == "__main__":
    main()
