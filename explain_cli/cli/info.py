"""`explain info`: what the tool offers (methods, options, segmenters, presets, baselines), or with
``--models`` only the model formats and architectures, as text or JSON."""

from __future__ import annotations

import json
import platform
from typing import Any

import typer

from explain_cli._version import __version__
from explain_cli.options import schema


def overview() -> dict[str, Any]:
    """Methods with their parameters, every option, segmenters, preprocessing presets, baselines, versions."""
    import torch
    import torchvision

    from explain_cli.baselines import BASELINES
    from explain_cli.engines import ENGINES
    from explain_cli.preprocess import PRESETS
    from explain_cli.segmentation import SEGMENTERS, segmenter_defaults

    return {
        "version": __version__,
        "methods": {
            name: {"summary": e.summary,
                   "params": {o.name: o.per_method[name] for o in schema.OPTIONS.values() if name in o.per_method}}
            for name, e in ENGINES.items()
        },
        "options": {o.name: {"default": o.per_method or o.default, "help": o.help, "choices": o.choices,
                             "methods": o.methods, "tasks": o.tasks, "cli": o.flag} for o in schema.OPTIONS.values()},
        "segmenters": {name: segmenter_defaults(name) for name in SEGMENTERS},
        "preprocess": {"auto": "the model's own (images) / none (tensors)",
                       "model": "the preprocessing the model file or architecture declares",
                       **{k: v.to_dict() for k, v in PRESETS.items()}},
        "baselines": list(BASELINES),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.cuda.is_available(),
    }


def model_formats() -> dict[str, Any]:
    """The model formats (what each needs installed, and whether it is) and torchvision's architectures."""
    import torchvision

    from explain_cli.models import formats

    return {"formats": formats(), "torchvision_models": sorted(torchvision.models.list_models(module=torchvision.models))}


def show(*, models: bool, as_json: bool) -> None:
    """Print the overview, or with ``models`` only the formats and architectures."""
    data = model_formats() if models else overview()
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif models:
        _print_formats(data)
    else:
        _print_overview(data)


def _print_overview(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(markup=False)  # "explain_cli[onnx]" is text, not a markup tag
    console.print(f"explain_cli {__version__} · torch {data['torch']} · torchvision {data['torchvision']} · "
                  f"CUDA {'yes' if data['cuda'] else 'no'}")
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
    console.print("model formats and architectures: explain info --models")


def _print_formats(data: dict[str, Any]) -> None:
    """One line per format; the command that installs its extra on a line of its own, never cut."""
    rows = data["formats"]
    name_w = max(len(f["format"]) for f in rows) + 2
    example_w = max(len(f["example"]) for f in rows) + 2
    typer.echo("model formats (MODEL as you pass it; installed or not):")
    for f in rows:
        typer.echo(f"  {f['format']:<{name_w}}{f['example']:<{example_w}}{'installed' if f['installed'] else 'not installed'}")
        if f["install"]:
            typer.echo(" " * (2 + name_w) + f["install"])
    typer.echo("torchvision architectures (torchvision:ARCH):")
    import textwrap

    from explain_cli.cli.helptext import width

    for line in textwrap.wrap(", ".join(data["torchvision_models"]), width() - 2):
        typer.echo("  " + line)
