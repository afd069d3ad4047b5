"""Paired, interleaved timing: the ratio of each variant to a baseline measured in the same round.

Why paired rounds: on a shared machine the load drifts over seconds. Timing each variant
separately and dividing the medians mixes load levels (the 17:14 run that made "skip + clip"
look cheaper than "skip only" did exactly that). Here every round runs every variant once, back
to back, for a block of the same number of steps, and each variant's ratio is taken against the
baseline's block *of that round*, so drift slower than a round cancels. Each round runs the
variants in a fresh random order (seeded, so a rerun uses the same orders), so no variant
always runs first or always right after the same neighbour: a plain rotation (used until
2026-12-02) kept every variant's predecessor fixed, which turns a neighbour's effect on
caches and allocator state into a bias instead of noise.

Method, per `measure()` call:
1. Warm-up: every variant runs a few blocks (compilation, tracing, first-call allocations).
   Then every object alive is frozen out of the garbage collector (`gc.freeze`), so the
   collection before each block does not walk the models again each time.
2. Calibration: the baseline runs 1, 2, 4, ... steps until a block takes >= 50 ms; from the
   median of three blocks of that length the block length is set so that one block takes
   about `block_seconds` (0.3 s by default), well above timer resolution and scheduler time
   slices. All variants use the same step count.
3. `rounds` rounds; per round and variant, wall time (`perf_counter`) and process CPU time
   (`process_time`, all threads) of one block, and the ratios to the baseline's block.
4. An A/A control (a second copy of the baseline, `Variant(control=True)`) is timed like the
   others: its ratio is 1 by construction, so its IQR shows how much spread the machine adds.
5. Reported: the median paired ratio with its 95% confidence interval (distribution-free, from
   order statistics: `median_confidence_interval`) and its interquartile range (IQR), for wall
   and CPU time, plus the load average before and after. A ratio target (e.g. <= 1.05) is
   "met" when the whole confidence interval of the median is at or below it, "missed" when it
   is wholly above, and otherwise "undecided at this load". The IQR is the spread of single
   rounds; the interval is where the median itself lies, and narrows as rounds are added
   (about as 1/sqrt(rounds)), so a target close to the true ratio needs more `--rounds`. At 15
   rounds the interval spans the 4th to 12th of the sorted ratios, slightly wider than the
   IQR.

A variant is a callable `run(steps)` that runs `steps` training steps and returns only once the
work is done (JAX dispatches asynchronously: read a result back before returning). It returns
None, and the harness times the call; or it times its steps itself and returns `(wall seconds,
cpu seconds)` of exactly those steps (`fit_step_runner`, whose `fit` call has setup around the
steps that is not a training step).
"""

import contextlib
import dataclasses
import gc
import math
import os
import random
import statistics
import sys
import time

__all__ = [
    "Copies",
    "Variant",
    "VariantResult",
    "Measurement",
    "add_arguments",
    "add_copies_argument",
    "control_warning",
    "copies_of",
    "limit_threads_from_argv",
    "measure",
    "print_measurement",
    "print_header",
    "fit_step_runner",
    "train_step_runner",
    "median_confidence_interval",
    "verdict",
]

CALIBRATION_FLOOR_SECONDS = 0.05
WARMUP_BLOCKS = 2


@dataclasses.dataclass
class Variant:
    """One thing to time.

    Attributes:
        name: Label printed in the table.
        run: `run(steps)` runs `steps` steps and returns when they are finished.
        target: Largest acceptable ratio to the baseline (e.g. 1.05), or None for a
            reference variant that has no target.
        control: True for an A/A control: a second, identical copy of the baseline. Its true
            ratio is 1, so its spread is the noise floor of this run.
    """

    name: str
    run: object
    target: float | None = None
    control: bool = False


class Copies:
    """`run(steps)` over several copies of one variant, built alike: a different copy each call.

    Why: two models built alike in one process can differ in speed by a few percent for the
    whole run (where their buffers landed, what the first trace left behind). On TF the A/A
    control of `bench_optimizers.py` read 0.983 [0.972-0.995] at 2026-12-05 21:35 UTC, and
    0.967 and 0.973 in two runs of a scratch probe of the same model an hour later (1.010 in
    a third), so one copy per variant turns such an offset into a ratio the rounds cannot
    average away. With `k` copies, each round times
    every variant's next copy (in turn, so each copy gets every k-th round): a copy's offset
    becomes round-to-round spread, which the confidence interval sees, and the median pools
    the copies.

    Args:
        runs: The copies' `run(steps)` callables, each for a separately built model.
    """

    def __init__(self, runs):
        self.runs = list(runs)
        if not self.runs:
            raise ValueError("`runs` must hold at least one run(steps) callable. Received: []")
        self._next = 0

    def __len__(self):
        return len(self.runs)

    def __call__(self, steps):
        run = self.runs[self._next]
        self._next = (self._next + 1) % len(self.runs)
        return run(steps)


def copies_of(make_run, copies):
    """`run(steps)` for `copies` models: `make_run(i)` builds copy i; one copy runs directly."""
    runs = [make_run(i) for i in range(copies)]
    return runs[0] if len(runs) == 1 else Copies(runs)


def _copies(run):
    return len(run) if isinstance(run, Copies) else 1


@dataclasses.dataclass
class VariantResult:
    name: str
    target: float | None
    control: bool
    wall_ratios: list
    cpu_ratios: list
    wall_seconds: list
    cpu_seconds: list


@dataclasses.dataclass
class Measurement:
    title: str
    baseline: str
    steps_per_block: int
    rounds: int
    load_before: tuple
    load_after: tuple
    elapsed_seconds: float
    results: list
    copies: int = 1


def limit_threads_from_argv(argv=None):
    """Applies `--threads N` and `--one-cpu` from the command line; call it before importing keras.

    Every backend sizes its CPU thread pools at import. On a machine whose load exceeds its
    cores, a pool as wide as the machine spends most of its time waiting at barriers for
    threads that are not scheduled (torch's MLP step went from 42 ms with one thread to 188 ms
    with two at load 4 on 2 cores), which swamps the differences being measured. `--threads`
    sets the same limit for every variant, baseline included; without it the backends'
    defaults are used.

    `--one-cpu` pins the process to one CPU (its lowest allowed one). XLA CPU sizes its
    parallel task splitting by the CPUs the process may run on: on two CPUs it splits a
    fusion it prices above 100,000 cycles into two tasks, whose second one waits for the core
    the Python thread is using (`probe_auto_scale_jax_step.py`); on one CPU it splits nothing.
    Every variant, baseline included, runs pinned.

    Returns:
        The thread count applied, or None.
    """
    argv = sys.argv if argv is None else argv
    if "--one-cpu" in argv[1:]:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    threads = None
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = argv[i + 1]
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
    if threads is None:
        return None
    threads = str(int(threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = threads
    os.environ["TF_NUM_INTEROP_THREADS"] = threads
    if threads == "1":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    return int(threads)


def add_arguments(parser, rounds=15, block_seconds=0.3):
    """Adds `--rounds`, `--block-seconds`, `--threads` and `--one-cpu` to an argparse parser."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per backend pool, same for every variant (default: backend's own); "
        "applied at import by limit_threads_from_argv",
    )
    parser.add_argument(
        "--one-cpu",
        action="store_true",
        help="pin the process to one CPU, every variant alike (applied at import by "
        "limit_threads_from_argv)",
    )
    parser.add_argument(
        "--rounds", type=int, default=rounds, help=f"paired rounds (default {rounds})"
    )
    parser.add_argument(
        "--block-seconds",
        type=float,
        default=block_seconds,
        help=f"target duration of one variant's block of steps (default {block_seconds})",
    )


def add_copies_argument(parser):
    """Adds `--copies K` (default 1): models built per variant, timed in turn (`Copies`)."""
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="models built alike per variant, a different one each round, so a copy's own "
        "speed offset averages out (default 1)",
    )


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def median_confidence_interval(values, level=0.95):
    """Distribution-free confidence interval of the median: `(low, high)` order statistics.

    With n independent rounds, the number of ratios below the true median is Binomial(n, 1/2);
    the interval [x_(k), x_(n-k+1)] of the sorted values covers the median with probability
    at least `level` for the largest k with P(Binomial(n, 1/2) < k) <= (1 - level) / 2.
    Fewer than 6 values cannot reach 95%: the whole range is returned.
    """
    ordered = sorted(values)
    n = len(ordered)
    tail = (1.0 - level) / 2.0
    k, cumulative = 0, 0.0
    while k < n:
        cumulative += math.comb(n, k) / 2.0**n  # P(B == k)
        if cumulative > tail:
            break
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


def verdict(ratios, target):
    """'met', 'missed' or 'undecided at this load' for a ratio target, from the median's 95% CI."""
    if target is None:
        return ""
    low, high = median_confidence_interval(ratios)
    if high <= target:
        return f"met (<= {target:g})"
    if low > target:
        return f"missed (> {target:g})"
    return "undecided at this load"


@contextlib.contextmanager
def _setup_objects_frozen():
    """Moves every object alive after the warm-up out of the garbage collector's sight.

    `_timed` runs a full collection before each block (untimed, so no block pays for the
    garbage of another). With a benchmark's models alive (~500,000 tracked objects) each one
    walked them all: 374.5 ms with bench_finite_check's torch models on this project's 2-core
    machine, 0.7 ms frozen (`gc.freeze`; `benchmarks/probe_gc_cost.py`, 2026-12-02 18:00 UTC),
    which is what makes many short blocks (`--block-seconds 0.05`) affordable. The garbage
    the steps make is still collected. Python started no full (generation-2) collection of
    its own in 200 steps of each model, so this is about the run's length, not its noise.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _timed(run, steps):
    gc.collect()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    timed_inside = run(steps)
    if timed_inside is not None:
        # The runner timed its steps itself (`fit_step_runner`: only the steps, not fit's
        # per-call setup).
        return timed_inside
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


def _calibrate(run, block_seconds):
    steps = 1
    while True:
        wall, _ = _timed(run, steps)
        if wall >= CALIBRATION_FLOOR_SECONDS or steps >= 1 << 16:
            break
        steps *= 2
    # One block can land in a burst of load from other processes: take the median of three.
    walls = sorted([wall] + [_timed(run, steps)[0] for _ in range(2)])
    per_step = walls[1] / steps
    return max(1, math.ceil(block_seconds / per_step))


def round_orders(names, rounds, seed=0):
    """One random order of `names` per round, the same for the same arguments.

    Returns:
        List of `rounds` lists, each a permutation of `names`.
    """
    rng = random.Random(seed)
    orders = []
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        orders.append(order)
    return orders


def measure(title, variants, baseline, rounds=15, block_seconds=0.3, steps_per_block=None):
    """Times `variants` in paired rounds, each in a random order; returns a `Measurement`.

    Args:
        title: Printed heading.
        variants: List of `Variant`; one of them is named `baseline`.
        baseline: Name of the variant every ratio is taken against.
        rounds: Number of paired rounds.
        block_seconds: Target duration of one block; sets the step count from a calibration.
        steps_per_block: Fixed step count instead of calibrating.
    """
    names = [v.name for v in variants]
    if baseline not in names:
        raise ValueError(f"`baseline` must name a variant. Received: baseline={baseline!r}")
    by_name = {v.name: v for v in variants}
    load_before = os.getloadavg()
    start = time.perf_counter()
    for variant in variants:
        for _ in range(WARMUP_BLOCKS * _copies(variant.run)):
            variant.run(2)
    if steps_per_block is None:
        steps_per_block = _calibrate(by_name[baseline].run, block_seconds)
    # One untimed block each at the final length: first runs of a longer loop can still
    # allocate (e.g. a larger in-memory dataset) or retrace.
    for variant in variants:
        for _ in range(_copies(variant.run)):
            variant.run(steps_per_block)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    with _setup_objects_frozen():
        for order in round_orders(names, rounds):
            for name in order:
                w, c = _timed(by_name[name].run, steps_per_block)
                wall[name].append(w)
                cpu[name].append(c)
    results = []
    for variant in variants:
        results.append(
            VariantResult(
                name=variant.name,
                target=variant.target,
                control=variant.control,
                wall_ratios=[w / b for w, b in zip(wall[variant.name], wall[baseline])],
                cpu_ratios=[c / b for c, b in zip(cpu[variant.name], cpu[baseline])],
                wall_seconds=wall[variant.name],
                cpu_seconds=cpu[variant.name],
            )
        )
    return Measurement(
        title=title,
        baseline=baseline,
        steps_per_block=steps_per_block,
        rounds=rounds,
        load_before=load_before,
        load_after=os.getloadavg(),
        elapsed_seconds=time.perf_counter() - start,
        results=results,
        copies=max(_copies(v.run) for v in variants),
    )


def print_header(script, extra=""):
    """Prints the versions, the machine and the load: the context every number needs."""
    import keras

    backend = keras.config.backend()
    module = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}.get(backend)
    version = getattr(sys.modules.get(module), "__version__", "?") if module else "?"
    load = os.getloadavg()
    threads = os.environ.get("OMP_NUM_THREADS", "backend default")
    print(
        f"{script}: backend={backend} {version}, keras {keras.__version__}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} allowed), threads {threads}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f"\n{extra}" if extra else ""),
        flush=True,
    )


def _fmt(ratios):
    low, high = median_confidence_interval(ratios)
    q1, q3 = _quartiles(ratios)
    return f"{statistics.median(ratios):.3f} [{low:.3f}-{high:.3f}] {q1:.2f}-{q3:.2f}"


CONTROL_TOLERANCE = 0.01


def control_warning(result, tolerance=CONTROL_TOLERANCE):
    """A warning line if an A/A control's median wall ratio is more than `tolerance` from 1.

    The control is a second copy of the baseline, so its true ratio is 1; a median further off
    means the baseline's own models ran fast or slow this run, which moves every ratio of the
    run with it (2026-12-06: TF A/A 1.016 with three copies, and every ratio ~1.5 % higher than
    in the runs with eight copies, whose A/A read 0.997-1.001; docs/benchmarks.md). Returns
    None for a control within the tolerance or for a variant that is not a control.
    """
    if not result.control:
        return None
    median = statistics.median(result.wall_ratios)
    if abs(median - 1.0) <= tolerance:
        return None
    return (
        f"note: the A/A control reads {median:.3f}, more than {tolerance:.0%} from 1: the "
        "baseline's own speed moves every ratio of this run; rerun with more --copies "
        "before reading a verdict"
    )


def print_measurement(m):
    """Prints one measurement: median paired ratios, their 95% CI [low-high] and IQR."""
    block = statistics.median(m.results[0].wall_seconds + m.results[-1].wall_seconds)
    print(
        f"\n## {m.title}\n{m.rounds} paired rounds, {m.steps_per_block} steps per block "
        f"(~{block:.2f} s), random order"
        + (f", {m.copies} model copies per variant in turn" if m.copies > 1 else "")
        + f"; load average (1 min) {m.load_before[0]:.2f} -> "
        f"{m.load_after[0]:.2f}; {m.elapsed_seconds:.0f} s in all"
    )
    header = (
        f"{'variant':38s} {'ms/step':>8s}  {'wall ratio [95% CI] IQR':>32s}  "
        f"{'cpu ratio [95% CI] IQR':>32s}  verdict on the CI (wall | cpu)"
    )
    print(header)
    for r in m.results:
        ms = statistics.median(r.wall_seconds) / m.steps_per_block * 1e3
        if r.name == m.baseline:
            print(f"{r.name + ' (baseline)':38s} {ms:8.2f}  {'1':>32s}  {'1':>32s}")
            continue
        decided = "A/A control: true ratio 1, spread = noise" if r.control else ""
        if r.target is not None:
            decided = f"{verdict(r.wall_ratios, r.target)} | {verdict(r.cpu_ratios, r.target)}"
        print(
            f"{r.name:38s} {ms:8.2f}  {_fmt(r.wall_ratios):>32s}  {_fmt(r.cpu_ratios):>32s}"
            f"  {decided}"
        )
    for r in m.results:
        warning = control_warning(r)
        if warning:
            print(warning)
    sys.stdout.flush()


def train_step_runner(model, x, y, batch_size):
    """Returns `run(steps)`: `steps` calls of `model.train_on_batch`, cycling a fixed batch pool.

    Why not a whole `fit` call: its setup (data adapter, iterator, callbacks) would be timed
    with the steps (`fit_step_runner` times the steps inside one epoch instead). `train_on_batch`
    runs the same compiled train function (`tf.function` / `jax.jit` / eager torch) one batch
    at a time. The batches are converted to backend tensors once, outside the timing. The
    last weight is read back at the end so asynchronous backends (JAX) have finished.
    """
    import keras

    batches = [
        (
            keras.ops.convert_to_tensor(x[start : start + batch_size]),
            keras.ops.convert_to_tensor(y[start : start + batch_size]),
        )
        for start in range(0, len(x) - batch_size + 1, batch_size)
    ]

    def run(steps):
        for step in range(steps):
            xb, yb = batches[step % len(batches)]
            model.train_on_batch(xb, yb)
        keras.ops.convert_to_numpy(model.trainable_weights[-1])

    return run


def fit_step_runner(model, x, y, batch_size):
    """Returns `run(steps)`: one `model.fit` epoch, timed over `steps` of its steps only.

    What it times is a training step as `fit` runs it, which is not what `train_on_batch`
    runs: Keras's `fit` resets the metrics once per epoch, not per step; on JAX it keeps the
    model state in its loop and writes it back once per epoch (`train_on_batch` writes it back
    every call); the logs are converted to Python numbers by the callback list in a
    background thread (with the default callbacks), not by the caller. So the per-call cost
    that each reported metric adds in `train_on_batch` (a reset, a read, a log entry) is here
    paid once per epoch, plus one log entry per step in that thread.

    The epoch has `steps + 1` batches of `x`/`y` (the rows repeated in order, `shuffle=False`,
    Keras's own data adapter for NumPy arrays, as a user's `fit(x, y)` gets). A callback
    reads the clocks when batch 1 begins and when the epoch ends (after Keras has flushed the
    background log conversions and, on JAX, written the state back), so `fit`'s setup (data
    adapter, iterator, callbacks) and batch 0 (the iterator's
    first fetch) are outside the window, and the epoch's end (metric results, state write-back)
    is inside it, once per block. Returns `(wall seconds, cpu seconds)` of those `steps` steps.
    """
    import keras
    import numpy as np

    class _StepClock(keras.callbacks.Callback):
        async_safe = True

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                self.start = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.end = time.perf_counter(), time.process_time()

    rows = (len(x) // batch_size) * batch_size
    if rows == 0:
        raise ValueError(
            f"`x` must hold at least one full batch of `batch_size` rows. Received: "
            f"{len(x)} rows, batch_size={batch_size}"
        )
    x, y = x[:rows], y[:rows]
    epoch_data = {}

    def run(steps):
        if steps not in epoch_data:
            wanted = (steps + 1) * batch_size
            order = np.arange(wanted) % rows
            epoch_data.clear()
            epoch_data[steps] = (x[order], y[order])
        xs, ys = epoch_data[steps]
        clock = _StepClock()
        model.fit(
            xs, ys, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[clock]
        )
        if steps == 0:
            return 0.0, 0.0
        return clock.end[0] - clock.start[0], clock.end[1] - clock.start[1]

    return run


def print_paired_ratio(m, numerator, denominator):
    """Prints `numerator / denominator` paired within each round of `m` (e.g. new / old)."""
    by_name = {r.name: r for r in m.results}
    top, bottom = by_name[numerator], by_name[denominator]
    wall = [a / b for a, b in zip(top.wall_seconds, bottom.wall_seconds)]
    cpu = [a / b for a, b in zip(top.cpu_seconds, bottom.cpu_seconds)]
    print(f"{numerator + ' / ' + denominator:38s} {'':8s}  {_fmt(wall):>32s}  {_fmt(cpu):>32s}")
    sys.stdout.flush()
