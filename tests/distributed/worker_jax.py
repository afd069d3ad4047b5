"""JAX worker: the scenarios under `keras.distribution.DataParallel` on virtual CPU devices.

Run by tests/distributed/test_data_parallel_jax.py as `python -m tests.distributed.worker_jax`.
"""

import os

from tests.distributed._launch import REPLICAS, emit_result

# Before keras or jax is imported: the backend and the device count are fixed at import.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={REPLICAS}"
).strip()

import contextlib  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.distributed import _cases  # noqa: E402


def replica_values(variable):
    """One array per device holding a copy of the (replicated) variable, in device order."""
    shards = sorted(variable.value.addressable_shards, key=lambda shard: shard.device.id)
    return [np.asarray(shard.data) for shard in shards]


@contextlib.contextmanager
def data_parallel():
    devices = jax.devices("cpu")[:REPLICAS]
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        yield
    finally:
        keras.distribution.set_distribution(None)


def main():
    devices = jax.devices("cpu")
    if len(devices) < REPLICAS:
        raise RuntimeError(f"expected {REPLICAS} CPU devices, jax sees {devices}")
    results = _cases.run_all(_cases.CASES.values(), data_parallel, replica_values)
    emit_result({"devices": [str(d) for d in devices], "cases": results})


if __name__ == "__main__":
    main()
