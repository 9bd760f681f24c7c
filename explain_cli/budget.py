"""Up-front bounds on a run's memory, time and segments, from arithmetic alone.

Before an engine evaluates anything, :func:`check_budget` estimates what the run will hold in
memory (the coalition design, the masks, one batch of perturbed inputs) and how long its model
evaluations take, and refuses, in one line naming the option to lower, a run that would exceed:

* :data:`MAX_SEGMENTS` superpixels (:data:`MAX_RAG_SEGMENTS` for partition's ``rag`` tree);
* :data:`MAX_BATCH_BYTES` for one batch of perturbed inputs (the model's activations multiply it);
* :data:`MEMORY_FRACTION` of the machine's memory for the engine's own arrays;
* :data:`MAX_RUN_S` of model evaluations (the long-run announcement's count, at a measured
  batched cost).

``no_limit`` lifts the memory and time bounds (never the segment cap). The estimates count the
largest arrays each engine builds, within a small factor; they do not count the model's own
activations, which only the batch bound limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from explain_cli.errors import OptionError
from explain_cli.progress import duration

if TYPE_CHECKING:
    import torch

    from explain_cli.core import Evaluator
    from explain_cli.options.groups import Settings

#: Most superpixels any method explains; 4096 is a 64 × 64 grid. Kernel SHAP and LIME need many
#: times more evaluations than segments, so a useful map has far fewer.
MAX_SEGMENTS = 4096
#: Most superpixels partition's ``rag`` tree is built over: its merge search grows with M³
#: (16 s at 1024 segments on one core, about 3 min at 2025); ``hierarchy axis`` has no such cost.
MAX_RAG_SEGMENTS = 1024
#: Largest batch of perturbed inputs (float32 bytes); the model's activations are many times more.
MAX_BATCH_BYTES = 2 * 2**30
#: Share of the machine's memory (or of its cgroup's limit) the engine's own arrays may take.
MEMORY_FRACTION = 0.5
#: Longest run accepted, in estimated seconds of model evaluations (the long-run announcement's).
MAX_RUN_S = 2 * 3600.0
#: Evaluations an ``auto`` budget is counted at by the time bound: what it typically uses (the
#: help's 400-2,000), not its ``max_samples`` cap, which it reaches only when the map never settles
#: (the run then announces its own prediction). The memory bound counts the cap.
AUTO_TIMED_EVALUATIONS = 2_000


@dataclass(frozen=True)
class Run:
    """What the arithmetic needs to know about a run."""

    method: str
    params: Any  # the engine's parameters (samples, masks, repeats, ...)
    channels: int
    height: int
    width: int
    segments: int  # M
    targets: int  # K
    inputs: int  # N (batch methods), else 1
    batch_size: int


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a smaller cgroup (v2) limit."""
    total = 16 * 2**30  # where the platform cannot say
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def _samples(params: Any) -> int:
    """The evaluations a sampling engine may use: ``samples``, or ``max_samples`` when it is auto."""
    value: Any = getattr(params, "samples", None) or getattr(params, "masks", 0)
    return int(params.max_samples) if isinstance(value, str) else int(value)


def _budget_option(params: Any, name: str = "samples") -> str:
    return "max_samples" if isinstance(getattr(params, name, None), str) else name


def engine_arrays(run: Run) -> tuple[int, str]:
    """Bytes of the engine's largest arrays, and the option that sizes them.

    Kernel SHAP: coalitions n×M, the candidates of its balanced picks (n/2 × 32 × M, keys,
    order and flags), the per-size co-occurrence loads (sizes × M² float64, twice) and the
    regression over n/2 pairs (the kernel's square matrices over at most 1024 of them, the
    features, the influences). LIME: n × M samples in int64, float32 and float64, plus the
    surrogate's centred copies. RISE: the N small grids (s² floats and the draws behind them).
    Partition: memoised coalitions and contexts. Ablation: the M × M design. Permutation:
    repeats × M × N × K attributions and the M × M design.
    """
    p, m, k = run.params, run.segments, run.targets
    if run.method == "kernelshap":
        # the design's candidates per balanced pick, the regression's spanning pairs: the engine's own constants
        from explain_cli.engines.kernelshap.design import CANDIDATES
        from explain_cli.engines.kernelshap.fit import REPRESENTERS

        if getattr(p, "exact", False):  # every coalition; the engine refuses samples below 2^M itself
            rows = min(2**m, _samples(p))
            return rows * (m + 8 * (k + 2)), "n_segments"
        n = _samples(p)
        pairs = n // 2 if n // 2 >= m - 1 else n  # unpaired draws below M−1 pairs
        sizes = min(max(m // 2, 1), pairs)
        design = n * m + pairs * CANDIDATES * m * 13 + 2 * sizes * m * m * 8
        half, spanned = n // 2, min(n // 2, REPRESENTERS)
        fit = 6 * (spanned + 1) ** 2 * 8 + half * (m + spanned + k) * 8 * 4 + half * k * m * 8
        return design + fit, _budget_option(p)
    if run.method == "lime":
        return _samples(p) * (m * (8 + 4 + 8 * 4) + 8 * k), _budget_option(p)
    if run.method == "rise":
        n = _samples(p) if isinstance(p.masks, str) else int(p.masks)
        return n * (p.grid * p.grid * 9 + 16), _budget_option(p, "masks")
    if run.method == "partition":
        return _samples(p) * (2 * m + 16 * k) + 2 * m * m * 8, "samples"
    if run.method == "ablation":
        return 2 * m * m * 4 + m * k * 8, "n_segments"
    if run.method == "permutation":
        return int(p.repeats) * m * run.inputs * k * 8 * 2 + m * m * 4, "repeats"
    return 0, "samples"


def batch_bytes(run: Run) -> int:
    """Bytes of one batch of perturbed float32 inputs (what the model is handed at once)."""
    return run.batch_size * run.channels * run.height * run.width * 4


def timed_evaluations(run: Run) -> int:
    """The engine's evaluations as the time bound counts them: an ``auto`` budget at `AUTO_TIMED_EVALUATIONS`."""
    count = evaluations(run)
    if isinstance(getattr(run.params, "samples", None) or getattr(run.params, "masks", None), str):
        count = min(count, AUTO_TIMED_EVALUATIONS)
    return count


def evaluations(run: Run) -> int:
    """The engine's model evaluations (f(x) and f(baseline) included), as its progress bar counts them."""
    p, m = run.params, run.segments
    if run.method == "kernelshap" and getattr(p, "exact", False):
        return min(2**m, _samples(p))
    if run.method == "ablation":
        return m + 2
    if run.method == "permutation":
        return run.inputs * (1 + int(p.repeats) * m)
    if run.method == "partition":  # the exact Owen values' count, about M² for a balanced tree, caps it
        return min(_samples(p), m * m + 2)
    return _samples(p) + (2 if run.method == "rise" and not isinstance(p.masks, str) else 0)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def check_segments(m: int, method: str, params: Any = None, *, option: str = "n_segments") -> None:
    """Refuse more than `MAX_SEGMENTS` segments (`MAX_RAG_SEGMENTS` for a ``rag`` partition tree)."""
    if m > MAX_SEGMENTS:
        raise OptionError(option, f"gives {m:,} segments, over the maximum of {MAX_SEGMENTS:,}; ask for fewer "
                          "superpixels (or give a label map with fewer ids)")
    if method == "partition" and getattr(params, "hierarchy", None) == "rag" and m > MAX_RAG_SEGMENTS:
        raise OptionError("n_segments", f"gives {m:,} segments, over the {MAX_RAG_SEGMENTS:,} partition's rag tree "
                          "is built over (its cost grows with M³); ask for fewer, or use `hierarchy` axis")


def check_exact(run: Run) -> None:
    """Refuse Kernel SHAP's ``exact`` when its budget cannot hold all 2^M coalitions (the engine's rule, checked early)."""
    p, m = run.params, run.segments
    if run.method != "kernelshap" or not getattr(p, "exact", False) or m < 2:
        return
    option = _budget_option(p)
    budget = _samples(p)
    if m <= 62 and 2**m <= budget:
        return
    need = f"{2**m:,}" if m <= 40 else f"{2.0**m:.2e}"
    fits = max(2, budget.bit_length() - 1)
    raise OptionError("exact", f"needs 2^M = {need} evaluations for M = {m:,} segments, more than `{option}` "
                      f"({budget:,}); use at most {fits} segments (`n_segments`)"
                      + (f", or raise `{option}` to {need}" if m <= 23 else ""))


def check_memory(run: Run, *, limit: int | None = None, no_limit: bool = False) -> None:
    """Refuse a batch over `MAX_BATCH_BYTES` or engine arrays over ``limit`` (default: `MEMORY_FRACTION` of the machine)."""
    if no_limit:
        return
    batch = batch_bytes(run)
    if batch > MAX_BATCH_BYTES:
        fits = max(1, MAX_BATCH_BYTES // max(1, batch // run.batch_size))
        raise OptionError("batch_size", f"{run.batch_size:,} at {run.channels}×{run.height}×{run.width} makes batches of "
                          f"{_gb(batch)}, over the {_gb(MAX_BATCH_BYTES)} bound before the model's own activations; "
                          f"use at most {fits:,}, or a smaller `size`")
    limit = int(MEMORY_FRACTION * machine_memory()) if limit is None else limit
    arrays, option = engine_arrays(run)
    if arrays > limit:
        lower = f"`{option}`" + (" or `n_segments`" if option != "n_segments" else "")
        raise OptionError(option, f"makes {run.method}'s arrays need about {_gb(arrays)} for {run.segments:,} "
                          f"segments, over the {_gb(limit)} bound (half this machine's memory); lower {lower}, "
                          "or pass `no_limit` to try anyway")


def check_time(run: Run, cfg: "Settings", seconds_per_eval: float, probe: Callable[[int], float]) -> None:
    """Refuse a run whose model evaluations are estimated at over `MAX_RUN_S`, unless ``no_limit``.

    The count is the long-run announcement's (:func:`explain_cli.announce.planned_evaluations`,
    metrics included), an ``auto`` budget counted at its typical use (`AUTO_TIMED_EVALUATIONS`). The cost of one evaluation is f(x)'s
    (one row, warm-up included: an upper bound), and before refusing, one full batch of copies
    (``probe(batch_size)``, uncounted): the batched cost the run will pay, as the announcement
    measures it. Refused only when that measurement confirms.
    """
    from explain_cli.announce import planned_evaluations

    if cfg.values.get("no_limit"):
        return
    total = planned_evaluations(timed_evaluations(run), cfg, run.targets, (run.height, run.width))
    if total * seconds_per_eval <= MAX_RUN_S:
        return
    seconds_per_eval = min(seconds_per_eval, probe(run.batch_size))
    estimate = total * seconds_per_eval
    if estimate <= MAX_RUN_S:
        return
    option, value = _time_option(run, cfg, seconds_per_eval)
    raise OptionError(option, f"{value} makes this run take about {duration(estimate)} ({total:,} model evaluations "
                      f"at {seconds_per_eval * 1e3:.3g} ms each), over the {duration(MAX_RUN_S)} bound; lower it, "
                      "use a GPU (`device` cuda), or pass `no_limit` to run it anyway")


def _time_option(run: Run, cfg: "Settings", seconds_per_eval: float) -> tuple[str, Any]:
    """The option (and its value) that takes the run over the time bound: the metrics' re-runs when the
    engine alone fits, else the engine's budget (``n_segments`` where the count follows the segments)."""
    metrics = cfg.evaluation
    if timed_evaluations(run) * seconds_per_eval <= MAX_RUN_S:
        if metrics.stability >= 2:
            return "stability", metrics.stability
        return ("sanity", "on") if metrics.sanity else ("eval_step", metrics.eval_step)
    p = run.params
    if run.method == "permutation":
        return "repeats", f"{int(p.repeats):,}"
    if run.method == "ablation" or (run.method == "kernelshap" and getattr(p, "exact", False)):
        return "n_segments", f"{run.segments:,}"
    if run.method == "partition" and evaluations(run) < _samples(p):  # the exact Owen count, about M²
        return "n_segments", f"{run.segments:,}"
    option = _budget_option(p, "masks" if run.method == "rise" else "samples")
    return option, f"{getattr(p, option):,}"


def batch_cost(evaluator: "Evaluator", x: "torch.Tensor", copies: int) -> float:
    """Seconds per image of the evaluator's model on ``copies`` copies of ``x`` (C, H, W): not counted, not kept."""
    import time

    import torch

    batch = x.unsqueeze(0).repeat(copies, *([1] * x.dim()))  # its own memory: the model may write into it
    start = time.perf_counter()
    with torch.inference_mode(), evaluator.autocast():
        evaluator.model(batch)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - start) / copies


def check_budget(cfg: "Settings", x: "torch.Tensor", segments: int, targets: int, evaluator: "Evaluator") -> None:
    """Every bound, after f(x) and before the runtime probe and the engine: segments, exact, memory, then time.

    ``x`` is the model input, (C, H, W) or (N, C, H, W); ``targets`` K; the evaluator gives the
    batch size, f(x)'s cost and the model a full batch is timed on.

    Raises
    ------
    OptionError
        One line naming the option to lower (or ``no_limit``).
    """
    shape = tuple(x.shape)
    n, c, h, w = shape if len(shape) == 4 else (1, *shape)
    run = Run(cfg.method, cfg.params, c, h, w, segments, targets, n if cfg.engine.batch else 1, evaluator.batch_size)
    check_segments(segments, cfg.method, cfg.params)
    check_exact(run)
    check_memory(run, no_limit=bool(cfg.values.get("no_limit")))
    one = x[0] if len(shape) == 4 else x
    check_time(run, cfg, evaluator.forward_s / max(1, evaluator.evaluations),
               lambda copies: batch_cost(evaluator, one, copies))


def describe_bounds() -> dict[str, str]:
    """The bounds as ``explain info`` and the README state them."""
    return {
        "segments": f"at most {MAX_SEGMENTS:,} ({MAX_RAG_SEGMENTS:,} for partition's rag tree)",
        "batch": f"one batch of perturbed inputs at most {_gb(MAX_BATCH_BYTES)}",
        "memory": f"the engine's arrays at most {MEMORY_FRACTION:.0%} of this machine's {_gb(machine_memory())}",
        "time": f"model evaluations estimated at most {duration(MAX_RUN_S)} (an auto budget counted at "
                f"{AUTO_TIMED_EVALUATIONS:,})",
        "lifted by": "no_limit (memory and time; never the segment cap)",
    }
