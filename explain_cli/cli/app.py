"""The `explain` commands: a thin Typer skin over :mod:`explain_cli.api`.

Every explanation option is generated from :data:`explain_cli.options.schema.OPTIONS`
(:mod:`~explain_cli.cli.flags`); this module declares the commands, and
:mod:`~explain_cli.cli.terminal` maps errors to one line and an exit code. stdout carries only
the paths written (one per line), so scripts and Makefiles can use it; messages, warnings and
progress go to stderr.
"""

from __future__ import annotations

import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from explain_cli._version import __version__
from explain_cli.cli.flags import given_options, param, with_options
from explain_cli.cli.helptext import group_help, help_option
from explain_cli.cli.terminal import err, guard, make_progress, relay_warnings, warn
from explain_cli.errors import ExplainError, OptionError
from explain_cli.options import schema

SUMMARY = ("Explain what a PyTorch image model looks at: Kernel SHAP, partition (Owen values), LIME, RISE, "
           "permutation and ablation over superpixels.")
app = typer.Typer(
    name="explain",
    help=SUMMARY,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    invoke_without_command=True,  # `explain` alone prints the help (below)
    context_settings={"help_option_names": []},  # every command's --help is helptext's, in one style
)

DEBUG_HELP = "Show full tracebacks instead of one-line errors."
_DEBUG = param("debug", Annotated[bool, typer.Option("--debug", help=DEBUG_HELP, rich_help_panel="Run")], False)
_DEBUG_PLAIN = param("debug", Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)], False)
_MODEL = param("model", Annotated[Optional[str], typer.Argument(
    help="Model file (.pt TorchScript, .pt2, .onnx), or torchvision:ARCH / timm:NAME (e.g. torchvision:resnet18); "
         "explain info --models lists them.", show_default=False,
    metavar="MODEL")], None)
_INPUTS = param("inputs", Annotated[Optional[list[str]], typer.Argument(
    help="Images (PNG, JPEG, ...), tensors (.pt, .npy), or folders of them.", show_default=False, metavar="INPUT...")], None)
_CONFIG = param("config", Annotated[Optional[Path], typer.Option(
    "--config", help="Run the one job of a YAML config; options given here override it.", rich_help_panel="Run",
    metavar="FILE")], None)

#: `explain run` takes every option, listed by group (the order of GROUPS).
RUN_OPTIONS = sorted(schema.OPTIONS, key=lambda n: schema.GROUPS.index(schema.OPTIONS[n].group))


@app.command("run")
@with_options(RUN_OPTIONS, _MODEL, _INPUTS, _CONFIG, _DEBUG, panel="Run")
def run(*, model: str | None, inputs: list[str] | None, config: Path | None, debug: bool, **opts: Any) -> None:
    """Explain MODEL's prediction on each INPUT; writes OUT/NAME.METHOD.png and .json."""
    with guard(debug):
        given = given_options(opts)
        quiet = bool(given.get("quiet"))
        if config is None:
            if not model or not inputs:
                raise ExplainError("pass MODEL and at least one INPUT (or --config FILE); see explain run --help")
            jobs = [(model, inputs, [given])]
        else:
            from explain_cli.config import load_job

            # options given here override the file; --method replaces the job's methods
            schema.check(given)  # a bad value is named as the flag it came from, before the file is read
            job = load_job(config, overrides={k: v for k, v in given.items() if k != "method"},
                           method=given.get("method"))
            jobs = [(model or job.model, inputs or [str(p) for p in job.inputs], layers) for _, layers in job.methods]
        out = None
        for source, paths, layers in jobs:
            out = _run_job(source, paths, layers, quiet=quiet)
        if not quiet:
            typer.echo(f"explain: results saved to {out}", err=True)


def _run_job(source: str, paths: list[str], layers: list[dict[str, Any]], *, quiet: bool) -> Path:
    """Validate everything, then explain each input and write its files as soon as it is done."""
    from explain_cli.api import Explainer
    from explain_cli.fileio import check_output_dir
    from explain_cli.inputs.memory import as_inputs
    from explain_cli.options.settings import settings
    from explain_cli.precheck import check_files
    from explain_cli.result import check_unique_stems

    cfg = settings(*layers)  # every option error before any loading
    engine = cfg.engine
    paths = _expand_folders(paths)
    files_in = [Path(p) for p in paths]
    engine.check_inputs(len(files_in))
    out_dir = cfg.output.out
    names = ([cfg.output.name or "batch"] if engine.batch
             else check_unique_stems(files_in, "explain them into different --out folders"))
    check_output_dir(out_dir, [f"{n}.{engine.name}.{ext}" for n in names for ext in ("png", "json", "npy")])
    check_files(paths, cfg)  # sizes from headers: a bad mask or image is answered before the model loads
    values = {k: v for layer in layers for k, v in layer.items()}
    told: set[str] = set()

    def tell(message: str) -> None:  # warnings known before the work (random weights, a long run) print at once
        if not quiet and message not in told:
            told.add(message)
            warn(message)

    def inform(message: str) -> None:  # information, not a warning: the runtime probe and its verdict
        if not quiet:
            typer.echo(f"explain: {message}", err=True)

    explainer = Explainer(source, progress=make_progress(quiet=quiet), on_warning=tell, on_info=inform, **values)
    loaded = as_inputs(paths, channels=explainer.model.in_channels or 3, max_pixels=cfg.input.max_pixels)
    groups = [loaded] if engine.batch else [[item] for item in loaded]
    for group in groups:
        (expl,) = explainer.explain(group)
        files = expl.save(out_dir)
        if not quiet:
            for message in expl.warnings:
                if message not in told:
                    warn(f"{Path(expl.input['path']).name}: {message}")
        for path in files:
            typer.echo(str(path))
    return out_dir


def _expand_folders(paths: list[str]) -> list[str]:
    """Each folder as the image and tensor files in it (as a batch config takes it); files as given."""
    from explain_cli.config import INPUT_SUFFIXES, expand_inputs

    out: list[str] = []
    for p in paths:
        if not Path(p).is_dir():
            out.append(p)
            continue
        problems: list[str] = []
        found = expand_inputs(p, "INPUT", problems)
        if not found:
            raise ExplainError(f"INPUT {p} is a folder with no image or tensor files in it "
                               f"({', '.join(sorted(INPUT_SUFFIXES))})")
        out += [str(f) for f in found]
    return out


class Backend(str, Enum):
    local = "local"
    ray = "ray"


class LogFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def batch(
    config: Annotated[Path, typer.Argument(help="YAML config: defaults + jobs (see configs/).", show_default=False,
                                           metavar="CONFIG")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a setting for every job (repeatable; not method).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be written; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Redo items whose outputs already exist.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="K/N", help="Run only shard K of N (1-based): a stable partition of the items.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    log_format: Annotated[LogFormat, typer.Option("--log-format", metavar="text|json", help="text, or json: one JSON line per event on stderr.")] = LogFormat.text,
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
    report: Annotated[bool, typer.Option("--report", help="Also write report.html (every explanation, sortable) next to the summary.")] = False,
    backend: Annotated[Backend, typer.Option("--backend", metavar="local|ray", help="Where items run: local (this process) or ray (Ray actors; explain_cli[ray]).")] = Backend.local,
    address: Annotated[Optional[str], typer.Option("--address", metavar="auto|HOST:PORT", help="With --backend ray: join this Ray cluster (default: start a local Ray).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, metavar="N", help="With --backend ray: Ray actors, one model load each (default: the CPUs).")] = None,
    show_help: help_option() = False,
) -> None:
    """Run every job of a YAML config; skips finished outputs, records failures, writes summary.json/csv."""
    with guard(debug):
        import json

        from explain_cli.batch.plan import parse_shard
        from explain_cli.batch.run import run_batch
        from explain_cli.config import parse_overrides
        from explain_cli.progress import NullProgress

        overrides = parse_overrides(set_)
        shard_spec = parse_shard(shard)
        json_log = log_format == LogFormat.json

        def emit(event: dict) -> None:
            if json_log:
                typer.echo(json.dumps(event, default=str), err=True)
            elif event["event"] == "item" and event["status"] == "failed" and not quiet:
                warn(f"{event['job']}: {event['input']} · {event['method']}: {event['error']}")
            elif event["event"] == "info" and not quiet:  # the runtime probe, a long item's estimate
                typer.echo(f"explain: {event['job']}: {event['message']}", err=True)

        progress = NullProgress() if json_log else make_progress(quiet=quiet, unit="items")
        rows, summary = run_batch(config, overrides=overrides, dry_run=dry_run, force=force, shard=shard_spec,
                                  emit=emit, progress=progress, backend=backend.value, address=address, workers=workers)
        if dry_run:
            for row in rows:
                for path in row.outputs:
                    typer.echo(f"{row.status.removeprefix('planned-')} {path}")
            if summary is not None:  # the summary (and report) the run would write
                for listed in [summary, summary.with_suffix(".csv"), summary.parent / "report.html"][: 3 if report else 2]:
                    typer.echo(f"write {listed}")
            typer.echo(f"explain: dry run: {len(rows)} items, nothing written", err=True)
            return
        for row in rows:
            for path in row.outputs if row.status == "done" else []:
                typer.echo(path)
        failed = [r for r in rows if r.status == "failed"]
        if report and summary is not None:
            from explain_cli.render.report import write_report

            jsons = [p for r in rows for p in r.outputs if p.endswith(".json")]
            typer.echo(str(write_report(summary.parent, extra=jsons)))
        if not quiet and not json_log:
            done = sum(r.status == "done" for r in rows)
            skipped = sum(r.status == "skipped" for r in rows)
            typer.echo(f"explain: {done} done, {skipped} skipped (complete), {len(failed)} failed; summary in {summary}", err=True)
        if failed:
            raise typer.Exit(code=1)


SEGMENT_OPTIONS = ["segments", "n_segments", "compactness", "seg_param", "preprocess", "size", "max_pixels", "out",
                   "weights", "device"]
_SEG_INPUTS = param("inputs", Annotated[list[str], typer.Argument(help="Images or tensors to segment.", show_default=False,
                                                                   metavar="INPUT...")])
_SEG_MODEL = param("model", Annotated[Optional[str], typer.Option(
    "--model", help="Segment what this model sees (its preprocessing), exactly as `explain run` would.", metavar="MODEL")], None)


@app.command("segment")
@with_options(SEGMENT_OPTIONS, _SEG_INPUTS, _SEG_MODEL, _DEBUG_PLAIN, helps={
    "segments": "Superpixel algorithm to draw, or a label-map file (.npy or .png, one integer id per pixel, at the "
                "input's or the model's resolution). [default: slic]",
})
def segment_cmd(*, inputs: list[str], model: str | None, debug: bool, **opts: Any) -> None:
    """Draw superpixel boundaries (OUT/NAME.segments.png) to choose segmentation parameters."""
    with guard(debug):
        from explain_cli.api import as_model
        from explain_cli.fileio import atomic_write_bytes, check_output_dir
        from explain_cli.inputs.memory import as_inputs
        from explain_cli.options.settings import settings
        from explain_cli.preprocess import map_to_original, prepare
        from explain_cli.render.figures import render_segments_image
        from explain_cli.render.layout import to_png

        given = given_options(opts)
        cfg = settings(given)
        paths = [Path(p) for p in inputs]
        stems = {p.stem for p in paths}
        if len(stems) < len(paths):
            raise ExplainError("two inputs share a file name, so their outputs would collide; segment them into different --out folders")
        out_dir = cfg.output.out
        check_output_dir(out_dir, [f"{s}.segments.png" for s in stems])
        loaded_model = as_model(model, weights=cfg.model.weights, device=cfg.model.device) if model else None
        items = as_inputs(paths, channels=(loaded_model.in_channels if loaded_model else None) or 3,
                          max_pixels=cfg.input.max_pixels)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in items:
            prep = prepare(item, cfg, model_default=loaded_model.preprocess if loaded_model else None)
            seg = prep.segmentation
            full = map_to_original(seg.labels[None], prep.prepared.geometry, nearest=True)[0]
            h, w = prep.prepared.geometry.model
            title = f"{seg.algorithm}: {seg.n_segments} segments at {h}x{w} ({prep.spec.name} preprocessing)"
            path = out_dir / f"{item.stem}.segments.png"
            atomic_write_bytes(path, to_png(render_segments_image(item.display, full, title)))
            typer.echo(str(path))
            typer.echo(f"explain: {item.path.name}: {seg.n_segments} segments ({seg.algorithm}, {seg.params})", err=True)


EXPORT_OPTIONS = ["weights", "labels", "size", "device"]
_EXPORT_MODEL = param("model", Annotated[str, typer.Argument(help="Model to export (any MODEL `explain run` takes).",
                                                              show_default=False, metavar="MODEL")])
_EXPORT_OUT = param("out_path", Annotated[Path, typer.Argument(help="OUT.pt2 (torch.export) or OUT.onnx.",
                                                                show_default=False, metavar="OUT")])


@app.command("export")
@with_options(EXPORT_OPTIONS, _EXPORT_MODEL, _EXPORT_OUT, _DEBUG_PLAIN, helps={
    "size": "Input size H[,W] the model is traced at. [default: the size the model declares]",
    "labels": "Class names to embed: a text file (one per line), a JSON list, or 'imagenet'. [default: the model's own]",
})
def export_cmd(*, model: str, out_path: Path, debug: bool, **opts: Any) -> None:
    """Write MODEL as OUT.pt2 (torch.export) or OUT.onnx, with its labels and preprocessing embedded."""
    with guard(debug), relay_warnings():
        from explain_cli.api import as_model
        from explain_cli.models.export import export_model
        from explain_cli.options.settings import settings
        from explain_cli.targets import load_labels

        cfg = settings(given_options(opts))
        loaded = as_model(model, weights=cfg.model.weights, device=cfg.model.device)
        if cfg.input.size:
            h, w = cfg.input.size
        elif loaded.preprocess is not None and (loaded.preprocess.crop or loaded.preprocess.size):
            h, w = loaded.preprocess.crop or loaded.preprocess.size
        else:
            raise OptionError("size", "is needed: this model declares no input size; pass --size H,W")
        labels, _ = load_labels(cfg.targets.labels, loaded.labels)
        written = export_model(loaded, out_path, example_shape=(loaded.in_channels or 3, h, w), labels=labels)
        typer.echo(str(written))


EVALUATE_OPTIONS = ["mask", "tolerance", "deletion", "eval_step", "batch_size", "device"]
_EVAL_JSONS = param("files", Annotated[list[Path], typer.Argument(
    help="Explanation JSONs written with --save-map (their .npy maps sit beside them).", show_default=False,
    metavar="JSON...")])


_EVAL_MODEL = param("model", Annotated[Optional[str], typer.Option(
    "--model", help="The model to score the maps with (any MODEL `explain run` takes). [default: the model the JSON "
                    "names]", metavar="MODEL")], None)


@app.command("evaluate")
@with_options(EVALUATE_OPTIONS, _EVAL_JSONS, _EVAL_MODEL, _DEBUG_PLAIN)
def evaluate_cmd(*, files: list[Path], model: str | None, debug: bool, **opts: Any) -> None:
    """Add faithfulness metrics to explanations already written (the JSON's evaluation block)."""
    with guard(debug):
        from explain_cli.saved import evaluate_saved

        given = given_options(opts)
        for path in files:
            _, written = evaluate_saved(path, model=model, options=given)
            for p in written:
                typer.echo(str(p))


@app.command("report")
def report_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder of explanations (an --out folder, or a batch's); searched recursively.",
                                            show_default=False, metavar="OUT_DIR")],
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
    show_help: help_option() = False,
) -> None:
    """Write OUT_DIR/report.html: every explanation with its map, scores and metrics, sortable, offline."""
    with guard(debug):
        from explain_cli.render.report import write_report

        typer.echo(str(write_report(out_dir)))


@app.command("compare")
def compare_cmd(
    sources: Annotated[list[Path], typer.Argument(help="An output folder, or explanation JSON files (NAME.METHOD.json).",
                                                  show_default=False, metavar="OUT_DIR|JSON...")],
    out: Annotated[Optional[Path], typer.Option("--out", help="PNG to write. [default: compare.png in the folder given, or the first JSON's folder]",
                                                metavar="FILE")] = None,
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
    show_help: help_option() = False,
) -> None:
    """One montage PNG: per input, the image then each method's map per target, with metrics (needs --save-map)."""
    with guard(debug):
        from explain_cli.render.montage import write_compare

        typer.echo(str(write_compare(sources, out)))


@app.command()
def info(
    models: Annotated[bool, typer.Option("--models", help="List the model formats (what each needs installed) and torchvision's architectures instead.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    show_help: help_option() = False,
) -> None:
    """List methods and their options, segmenters, preprocessing presets, baselines and versions."""
    from explain_cli.cli.info import show

    show(models=models, as_json=json_out)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"explain_cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")] = False,
    show_help: help_option() = False,
) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(group_help(ctx.command, SUMMARY), nl=False)
        raise typer.Exit()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors become one line on stderr with exit code 2."""
    from explain_cli.fileio import TerminatedBySignal, install_termination_handlers

    TerminatedBySignal.last = None
    try:
        install_termination_handlers()  # SIGTERM/SIGHUP clean up like Ctrl-C: temp files removed
    except ValueError:  # not the main thread (tests calling main in a thread)
        pass
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:  # Typer's usage errors (unknown option, bad choice, ...)
        message = " ".join(exc.format_message().split())
        err(f"{message} (see explain --help)")
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        err("aborted")
        sys.exit(130)
    except KeyboardInterrupt as exc:
        err("interrupted")
        sys.exit(128 + getattr(exc, "signum", 2))
    if code == 130 and TerminatedBySignal.last is not None:  # outside a guard Typer returns 130, silently
        err(f"terminated by {signal.Signals(TerminatedBySignal.last).name}")
        sys.exit(128 + TerminatedBySignal.last)
    sys.exit(code if isinstance(code, int) else 0)

