"""The `explain` command line: thin Typer commands over the pipeline.

stdout carries only the paths written (one per line), so scripts and Makefiles can use it;
messages, warnings and progress go to stderr.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from explain_cli import __version__
from explain_cli.config import RunConfig
from explain_cli.engines import ENGINES
from explain_cli.errors import ExplainError
from explain_cli.segmentation import SEGMENTERS

app = typer.Typer(
    name="explain",
    help="Explain what a PyTorch image model looks at: LIME, Kernel SHAP, RISE, permutation, ablation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Method = Enum("Method", {name: name for name in ENGINES}, type=str)  # type: ignore[misc]
Segmenter = Enum("Segmenter", {name: name for name in SEGMENTERS}, type=str)  # type: ignore[misc]


class OutputSpace(str, Enum):
    logits = "logits"
    probs = "probs"


class Surrogate(str, Enum):
    ridge = "ridge"
    lasso = "lasso"
    linear = "linear"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def _err(message: str) -> None:
    typer.echo(f"explain: error: {message}", err=True)


def _warn(message: str) -> None:
    typer.echo(f"explain: warning: {message}", err=True)


DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]
SegOpt = Annotated[Optional[Segmenter], typer.Option("--segments", help="Superpixel algorithm. [default: slic; grid for permutation]")]
NSegOpt = Annotated[Optional[int], typer.Option("--n-segments", help="About how many superpixels (slic, watershed, grid). [default: 50]")]
CompactOpt = Annotated[Optional[float], typer.Option("--compactness", help="slic/watershed compactness.")]
SegParamOpt = Annotated[Optional[list[str]], typer.Option("--seg-param", help="Other segmenter parameter, KEY=VALUE (repeatable); see `explain info`.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if needed).")]
PreOpt = Annotated[str, typer.Option("--preprocess", help="auto | model | imagenet | none. auto: the model's own transforms for images, none for tensors.")]
SizeOpt = Annotated[Optional[str], typer.Option("--size", help="Resize the whole image to H[,W] (no crop).")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="Normalisation mean per channel, e.g. 0.5,0.5,0.5.")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="Normalisation std per channel.")]


def _guard(debug: bool):
    """Run a command body, turning user errors into one line + exit 2, and crashes into exit 1."""

    class _Guard:
        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type, exc, tb) -> bool:
            if exc is None or isinstance(exc, (typer.Exit, typer.Abort, KeyboardInterrupt)) or debug:
                return False
            if isinstance(exc, ExplainError):
                _err(str(exc))
                raise typer.Exit(code=exc.exit_code) from None
            if isinstance(exc, MemoryError):
                _err("out of memory; lower --batch-size")
                raise typer.Exit(code=1) from None
            _err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
            raise typer.Exit(code=1) from None

    return _Guard()


#: `explain run` parameters whose RunConfig field has another name.
_RUN_FIELD_NAMES = {"seg_param": "seg_params"}


@app.command()
def run(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="TorchScript file, or torchvision:ARCH (e.g. torchvision:resnet18).", show_default=False)] = None,
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Images (PNG, JPEG, ...) or tensors (.pt, .npy).", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Run the one job of a YAML config; options given here override it.")] = None,
    method: Annotated[Method, typer.Option("--method", "-m", help="Explanation method.")] = Method("lime"),
    samples: Annotated[Optional[int], typer.Option("--samples", "-n", help="Model evaluations, all included (lime 1000, kernelshap 2048).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for every random choice; same seed, same numbers.")] = 0,
    out: OutOpt = Path("explanations"),
    weights: Annotated[Optional[str], typer.Option("--weights", help="torchvision:ARCH weights: a state-dict file, or DEFAULT to download torchvision's. Omitted: random weights.")] = None,
    target: Annotated[Optional[list[str]], typer.Option("--target", "-t", help="auto, a class index or a label (repeatable).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="With --target auto: explain the K top classes (same evaluations as one).")] = 1,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Class names: text file, one per line, or a JSON list.")] = None,
    segments: SegOpt = None,
    n_segments: NSegOpt = None,
    compactness: CompactOpt = None,
    seg_param: SegParamOpt = None,
    baseline: Annotated[str, typer.Option("--baseline", help="zero | mean | blur | value:R,G,B (0-255). zero is in model input space.")] = "zero",
    preprocess: PreOpt = "auto",
    size: SizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    output: Annotated[OutputSpace, typer.Option("--output", help="Explain logits or softmax probabilities.")] = OutputSpace.probs,
    batch_size: Annotated[str, typer.Option("--batch-size", "-b", help="Perturbations per forward pass, or auto (64 CPU, 128 CUDA).")] = "auto",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:N] | mps.")] = "auto",
    precision: Annotated[Precision, typer.Option("--precision", help="Autocast precision (CUDA only).")] = Precision.fp32,
    kernel_width: Annotated[Optional[float], typer.Option("--kernel-width", help="lime: kernel width σ. [default: 0.25]")] = None,
    distance: Annotated[Optional[str], typer.Option("--distance", help="lime: cosine | euclidean. [default: cosine]")] = None,
    surrogate: Annotated[Optional[Surrogate], typer.Option("--surrogate", help="lime: ridge (closed form) | lasso | linear. [default: ridge]")] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="lime: surrogate penalty, relative to the data scale. [default: 0.001]")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="kernelshap: enumerate all 2^M coalitions (exact Shapley values).")] = False,
    allocation: Annotated[Optional[str], typer.Option("--allocation", help="kernelshap: spread sampled coalitions over sizes equally (leverage scores) or by kernel mass. [default: leverage]")] = None,
    interactions: Annotated[Optional[int], typer.Option("--interactions", help="kernelshap: highest odd interaction order in the regression adjustment, 1 (plain Kernel SHAP), 3 or 5. [default: 5]")] = None,
    proxy: Annotated[Optional[str], typer.Option("--proxy", help="kernelshap: interaction prior of the regression adjustment: image (adjacent segments and important ones interact) or generic. [default: image]")] = None,
    masks: Annotated[Optional[int], typer.Option("--masks", help="rise: number of random masks. [default: 4000]")] = None,
    grid: Annotated[Optional[int], typer.Option("--grid", help="rise: mask grid size s (s×s cells). [default: 7]")] = None,
    p1: Annotated[Optional[float], typer.Option("--p1", help="rise: probability a cell keeps the input. [default: 0.5]")] = None,
    repeats: Annotated[Optional[int], typer.Option("--repeats", help="permutation: permutations per group. [default: 5]")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="permutation: output file name for the batch. [default: batch]")] = None,
    save_map: Annotated[bool, typer.Option("--save-map", help="Also write NAME.METHOD.npy, (K,H,W) at the original resolution.")] = False,
    boundaries: Annotated[bool, typer.Option("--boundaries/--no-boundaries", help="Draw superpixel boundaries.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or warnings.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Explain MODEL's prediction on each INPUT; writes OUT/NAME.METHOD.png and .json."""
    with _guard(debug):
        from explain_cli.pipeline import run as run_pipeline
        from explain_cli.segmentation import parse_seg_params

        cfg = RunConfig(
            method=method.value, samples=samples, seed=seed, out=str(out), weights=weights,
            target=target or ["auto"], top_k=top_k, labels=str(labels) if labels else None,
            segments=segments.value if segments else None, n_segments=n_segments, compactness=compactness,
            seg_params=parse_seg_params(seg_param), baseline=baseline, preprocess=preprocess,
            size=size, mean=mean, std=std, output=output.value, batch_size=batch_size, device=device,
            precision=precision.value, kernel_width=kernel_width, distance=distance,
            surrogate=surrogate.value if surrogate else None, alpha=alpha, exact=exact or None,
            allocation=allocation, interactions=interactions, proxy=proxy, masks=masks, grid=grid, p1=p1, repeats=repeats, name=name, save_map=save_map,
            boundaries=boundaries, quiet=quiet,
        )

        def report(expl, files) -> None:
            if not quiet:
                for message in expl.warnings:
                    _warn(f"{Path(expl.input['path']).name}: {message}")
            for path in files:
                typer.echo(str(path))

        if config is None:
            if not model or not inputs:
                raise ExplainError("pass MODEL and at least one INPUT (or --config FILE); see explain run --help")
            run_pipeline(model, inputs, cfg, on_result=report)
        else:
            from explain_cli.batch import load_job

            # Command line > config: only options given explicitly on the command line override.
            given = {
                _RUN_FIELD_NAMES.get(name, name): getattr(cfg, _RUN_FIELD_NAMES.get(name, name))
                for name in ctx.params
                if ctx.get_parameter_source(name).name == "COMMANDLINE"
                and hasattr(cfg, _RUN_FIELD_NAMES.get(name, name))
            }
            job = load_job(config, overrides={k: v for k, v in given.items() if k != "method"})
            methods = [(m, c) for m, c in job.methods if "method" not in given or m == cfg.method]
            if not methods:
                raise ExplainError(f"--method {cfg.method} is not among the config's methods ({', '.join(m for m, _ in job.methods)})")
            for _, job_cfg in methods:
                run_pipeline(model or job.model, inputs or [str(p) for p in job.inputs], job_cfg, on_result=report)
                out = Path(job_cfg.out)
        if not quiet:
            typer.echo(f"explain: results saved to {out}", err=True)


class LogFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def batch(
    config: Annotated[Path, typer.Argument(help="YAML config: defaults + jobs (see configs/).", show_default=False)],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any setting for every job: KEY=VALUE (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be written; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo items whose outputs already exist.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Run only shard K of N (K/N, 1-based): a stable partition of the items.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="text, or json: one JSON line per event on stderr.")] = LogFormat.text,
    debug: DebugOpt = False,
) -> None:
    """Run every job of a YAML config; skips finished outputs, records failures, writes summary.json/csv."""
    with _guard(debug):
        import json

        from explain_cli.batch import parse_shard, run_batch
        from explain_cli.config import parse_overrides
        from explain_cli.progress import NullProgress, make_progress

        overrides = parse_overrides(set_)
        shard_spec = parse_shard(shard)
        json_log = log_format == LogFormat.json

        def emit(event: dict) -> None:
            if json_log:
                typer.echo(json.dumps(event, default=str), err=True)
            elif event["event"] == "item" and event["status"] == "failed" and not quiet:
                _warn(f"{event['job']}: {event['input']} · {event['method']}: {event['error']}")

        progress = NullProgress() if json_log else make_progress(quiet=quiet)
        rows, summary = run_batch(config, overrides=overrides, dry_run=dry_run, force=force, shard=shard_spec,
                                  emit=emit, progress=progress)
        if dry_run:
            for row in rows:
                for path in row.outputs:
                    typer.echo(f"{row.status.removeprefix('planned-')} {path}")
            typer.echo(f"explain: dry run: {len(rows)} items, nothing written", err=True)
            return
        for row in rows:
            for path in row.outputs if row.status == "done" else []:
                typer.echo(path)
        failed = [r for r in rows if r.status == "failed"]
        if not quiet and not json_log:
            done = sum(r.status == "done" for r in rows)
            skipped = sum(r.status == "skipped" for r in rows)
            typer.echo(f"explain: {done} done, {skipped} skipped (complete), {len(failed)} failed; summary in {summary}", err=True)
        if failed:
            raise typer.Exit(code=1)


@app.command("segment")
def segment_cmd(
    inputs: Annotated[list[str], typer.Argument(help="Images or tensors to segment.", show_default=False)],
    segments: SegOpt = None,
    n_segments: NSegOpt = None,
    compactness: CompactOpt = None,
    seg_param: SegParamOpt = None,
    out: OutOpt = Path("explanations"),
    preprocess: Annotated[str, typer.Option("--preprocess", help="imagenet | none (default for tensors).")] = "auto",
    size: SizeOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Draw superpixel boundaries (OUT/NAME.segments.png) to choose segmentation parameters."""
    with _guard(debug):
        from explain_cli.fileio import atomic_write_bytes, ensure_writable_dir
        from explain_cli.inputs import load_input
        from explain_cli.pipeline import check_unique_stems
        from explain_cli.preprocess import apply_preprocess, map_to_original, resolve_preprocess
        from explain_cli.render import render_segments_png
        from explain_cli.segmentation import parse_seg_params, segment, to_segmentation_space

        params = parse_seg_params(seg_param)
        if n_segments is not None:
            params["n_segments"] = n_segments
        if compactness is not None:
            params["compactness"] = compactness
        check_unique_stems([Path(p) for p in inputs])
        out_dir = ensure_writable_dir(out)
        loaded = [load_input(p) for p in inputs]
        for item in loaded:
            spec = resolve_preprocess(preprocess, model_default=None, input_kind=item.kind, size=size)
            prepared = apply_preprocess(item.pixels, spec)
            seg = segment(to_segmentation_space(prepared.pixels.numpy(), rescale=item.kind == "tensor"), RunConfig(segments=segments.value if segments else None).segmenter(batch=False), **params)
            full = map_to_original(seg.labels[None], prepared.geometry, nearest=True)[0]
            title = f"{seg.algorithm}: {seg.n_segments} segments at {prepared.geometry.model[0]}x{prepared.geometry.model[1]}"
            path = out_dir / f"{item.stem}.segments.png"
            atomic_write_bytes(path, render_segments_png(item.display, full, title))
            typer.echo(str(path))
            typer.echo(f"explain: {item.path.name}: {seg.n_segments} segments ({seg.algorithm}, {seg.params})", err=True)


@app.command()
def info(
    models: Annotated[bool, typer.Option("--models", help="Also list torchvision architectures.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List methods, segmenters, preprocessing presets, baselines and versions."""
    import dataclasses
    import json
    import platform

    from explain_cli.baselines import BASELINES
    from explain_cli.preprocess import PRESETS
    from explain_cli.segmentation import segmenter_params

    data: dict = {
        "version": __version__,
        "methods": {
            name: {"summary": e.summary, "params": {f.name: f.default for f in dataclasses.fields(e.params)}}
            for name, e in ENGINES.items()
        },
        "segmenters": {name: segmenter_params(name) for name in SEGMENTERS},
        "preprocess": {"auto": "model's own (images) / none (tensors)", **{k: v.to_dict() for k, v in PRESETS.items()}},
        "baselines": list(BASELINES),
        "python": platform.python_version(),
    }
    import torch
    import torchvision

    data["torch"] = torch.__version__
    data["torchvision"] = torchvision.__version__
    data["cuda"] = torch.cuda.is_available()
    if models:
        data["torchvision_models"] = sorted(torchvision.models.list_models(module=torchvision.models))
    if json_out:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"explain_cli {__version__} · torch {data['torch']} · torchvision {data['torchvision']} · CUDA {'yes' if data['cuda'] else 'no'}")
    table = Table("method", "what it does", "parameters (defaults)")
    for name, m in data["methods"].items():
        table.add_row(name, m["summary"], ", ".join(f"{k}={v}" for k, v in m["params"].items()))
    console.print(table)
    table = Table("segmenter", "parameters (defaults)")
    for name, params in data["segmenters"].items():
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in params.items()))
    console.print(table)
    console.print("preprocess presets: " + ", ".join(data["preprocess"]))
    console.print("baselines: " + ", ".join(data["baselines"]))
    if models:
        console.print("torchvision architectures: " + ", ".join(data["torchvision_models"]))


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"explain_cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Explain what a PyTorch image model looks at."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line on stderr with exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:  # Typer's usage errors (unknown option, bad choice, ...)
        message = " ".join(exc.format_message().split())
        _err(f"{message} (see explain --help)")
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        _err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
