"""The option schema is the one place defaults live; the CLI, YAML and Python all derive from it."""

from __future__ import annotations

import inspect
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from explain_cli.options import schema
from explain_cli.engines import ENGINES
from explain_cli.options.schema import OPTIONS
from tests.conftest import ROOT


def _flat(text: str) -> str:
    """Help text with its line wrapping (and any box drawing) undone."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture
def help80(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")

    def get(*args: str) -> str:
        r = cli(*args, "--help")
        assert r.exit_code == 0, r.stderr
        return r.stdout

    return get


# 10. no default is written twice ---------------------------------------------------------------

def test_run_help_shows_every_schema_default(help80):
    text = _flat(help80("run"))
    for name, o in OPTIONS.items():
        assert o.flag in text, f"{o.flag} missing from explain run --help"
        shown = o.default_text()
        if shown in ("none", "{}"):
            continue  # unset by default; the help sentence says what happens
        assert f"[default: {shown}]" in text, f"{o.flag}: help does not show [default: {shown}]"
    # and nothing shows a default that disagrees with the schema
    for flag, shown in re.findall(r"(--[a-z0-9-]+)\b[^\[]*?\[default: ([^\]]+)\]", text):
        name = flag[2:].replace("-", "_")
        if name in OPTIONS and OPTIONS[name].default_text() not in ("none", "{}"):
            assert shown == OPTIONS[name].default_text(), (flag, shown)


def test_typer_defaults_are_none_so_given_means_explicit(monkeypatch, cli, tmp_path):
    import typer.main

    from explain_cli.cli import app as cli_module

    run = typer.main.get_command(cli_module.app).commands["run"]
    by_name = {p.name: p for p in run.params}
    for name in OPTIONS:
        assert name in by_name, f"explain run has no parameter for {name}"
        assert by_name[name].default is None, f"--{name}: Typer default {by_name[name].default!r}, not None"
    # behaviour: with no flags, no option reaches the library; a flag given is exactly what arrives
    seen = []
    monkeypatch.setattr(cli_module, "_run_job", lambda source, paths, layers, quiet: seen.append(layers) or tmp_path)
    assert cli("run", "m.pt", "x.png").exit_code == 0
    assert cli("run", "m.pt", "x.png", "--no-boundaries", "--seed", "0").exit_code == 0
    assert seen == [[{}], [{"boundaries": False, "seed": 0}]]


def _schema_defaults(method: str) -> dict:
    out = {}
    for name, o in OPTIONS.items():
        if o.per_method:
            out[name] = o.per_method.get(method)
        else:
            out[name] = o.default
    out["method"] = method
    return out


@pytest.mark.parametrize("method", list(ENGINES))
def test_yaml_without_keys_gives_schema_defaults(method, tmp_path):
    from explain_cli.options.settings import settings
    from explain_cli.config import load_job

    image = tmp_path / "x.npy"
    np.save(image, np.zeros((3, 8, 8), np.float32))
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"model: m.pt\ninputs: [{image}]\nmethods: [{method}]\n")
    job = load_job(cfg)
    ((m, layers),) = job.methods
    assert m == method
    values = settings(*layers).values
    expected = _schema_defaults(method)
    for name in OPTIONS:
        assert values[name] == expected[name], f"{name}: YAML default {values[name]!r}, schema {expected[name]!r}"
    # and no defaults layer: the Python call with nothing set resolves the same
    assert settings({"method": method}).values == values


def test_python_signature_defaults_are_none():
    import explain_cli

    sig = inspect.signature(explain_cli.explain)
    keywords = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keywords, "explain() lists no keyword options"
    for p in keywords:
        assert p.default is None, f"explain({p.name}=...) defaults to {p.default!r}, not None"
        if p.name not in ("progress", "on_warning", "on_info"):  # callbacks, not options
            assert p.name in OPTIONS, f"explain() keyword {p.name} is not an option"
    sig = inspect.signature(explain_cli.Explainer.explain)
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            assert p.default is None, p.name


def test_engine_defaults_equal_dataclass_defaults():
    for method, engine in ENGINES.items():
        instance = engine.params()
        for f in engine.params.__dataclass_fields__:
            o = OPTIONS[f]
            assert method in o.methods
            assert o.per_method[method] == getattr(instance, f), (method, f)
            assert o.default is None, f"{f}: an engine parameter must not have a second, general default"
    for name, o in OPTIONS.items():
        for method in o.per_method:
            assert name in ENGINES[method].params.__dataclass_fields__, (name, method)


# 11. help at 80 columns ----------------------------------------------------------------------

@pytest.mark.parametrize("command", [(), ("run",)], ids=["explain", "run"])
def test_help_fits_80_columns(help80, command):
    text = help80(*command)
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, "lines over 80 columns:\n" + "\n".join(long)
    assert "<bool>" not in text


def test_run_help_lists_every_choice(help80):
    text = help80("run")
    flat = _flat(text)
    for name, o in OPTIONS.items():
        for choice in o.choices or ():
            assert re.search(rf"(?<![\w-]){re.escape(str(choice))}(?![\w-])", flat), \
                f"{o.flag}: choice {choice!r} missing from explain run --help"


# 12. no Typer or rich below the CLI ----------------------------------------------------------

def test_library_imports_no_typer_or_rich():
    code = r"""
import importlib, pkgutil, sys
import explain_cli
names = sorted(m.name for m in pkgutil.walk_packages(explain_cli.__path__, "explain_cli."))
names = [n for n in names if n.split(".")[1] not in ("cli", "__main__")]  # the CLI package is Typer's
bad = []
for name in names:
    importlib.import_module(name)
    for lib in ("typer", "rich", "click"):
        if lib in sys.modules and not any(lib in b for _, b in bad):
            bad.append((name, lib))
print(len(names))
print(bad)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, bad = out.stdout.strip().splitlines()[-2:]
    assert int(count) > 15  # the walk found the package's modules
    assert bad == "[]", f"(first module, library it pulled in): {bad}"


# 13. numeric options reject nan, inf and out-of-range values ----------------------------------

def _bad_values(o: schema.Option) -> list[str]:
    values = ["nan", "inf", "-inf"]
    if o.minimum is not None:
        low = o.minimum if o.exclusive_minimum else (o.minimum - 1 if o.kind == "int" else o.minimum - 0.5)
        values.append(str(low))
    if o.maximum is not None:
        high = o.maximum + 1 if o.kind == "int" else o.maximum * 2 + 1
        values.append(str(high))
    if o.choices:
        values.append(str(max(o.choices) + 1))
    return values


NUMERIC = [o for o in OPTIONS.values() if o.kind in ("int", "float")]


def test_numeric_options_are_bounded():
    for o in NUMERIC:
        assert o.choices or (o.minimum is not None and o.maximum is not None), f"{o.flag} has no range"


@pytest.mark.parametrize("name", [o.name for o in NUMERIC])
def test_numeric_option_rejects_bad_values(name, cli, linear_script, tmp_path):
    o = OPTIONS[name]
    x = tmp_path / "x.npy"
    np.save(x, torch.rand(3, 16, 16).numpy())
    method = o.methods[0] if o.methods else "ablation"
    for value in _bad_values(o):
        r = cli("run", linear_script, x, "--method", method, f"{o.flag}={value}", "--out", tmp_path / "out")
        assert r.exit_code == 2, (o.flag, value, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, (o.flag, value, r.stderr)
        assert o.flag in lines[0], (o.flag, value, lines[0])
        assert not (tmp_path / "out").exists()


# 13. typed settings: every option lands once, in its panel's group, parsed --------------------

GROUPS = {"Targets": "targets", "Input": "input", "Model": "model", "Output": "output", "Evaluation": "evaluation"}


def test_every_panel_option_is_a_field_of_its_typed_group():
    import dataclasses

    from explain_cli.options.settings import settings

    cfg = settings({"method": "lime"})
    for panel, group in GROUPS.items():
        fields = {f.name for f in dataclasses.fields(getattr(cfg, group))}
        assert {o.name for o in OPTIONS.values() if o.group == panel} <= fields, panel
    assert dataclasses.is_dataclass(cfg.params) and cfg.params.samples == cfg.values["samples"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.input.size = (1, 1)  # type: ignore[misc]


def test_free_form_values_arrive_parsed():
    from explain_cli.options.settings import settings
    from explain_cli.render.scale import Scale

    cfg = settings({"size": "224,160", "mean": "0.5", "std": "0.25,0.5,1", "batch_size": "32",
                    "baseline": "value:128,128,128", "scale": "fixed:-1,1", "out": "o"})
    assert cfg.input.size == (224, 160) and cfg.input.mean == (0.5,) and cfg.input.std == (0.25, 0.5, 1.0)
    assert cfg.model.batch_size == 32 and settings({}).model.batch_size == "auto"
    assert (cfg.baseline.kind, cfg.baseline.values, cfg.baseline.spec) == ("value", (128.0,) * 3, "value:128,128,128")
    assert cfg.output.scale == Scale("fixed", (-1.0, 1.0)) and str(cfg.output.out) == "o"
    assert cfg.values["size"] == "224,160"  # the plain values stay what a YAML file or explain() takes
    assert settings({"method": "permutation", "baseline": "purple"}).baseline is None  # a method without one


@pytest.mark.parametrize("layer,option,fragment", [
    ({"segments": "felzenszwalb", "seg_param": {"scale": -5}}, "seg_param", "scale must be a number in [0, 1e+06]"),
    ({"segments": "quickshift", "seg_param": {"ratio": 2}}, "seg_param", "ratio must be a number in [0, 1]"),
    ({"segments": "slic", "seg_param": {"bogus": 1}}, "seg_param", "no such parameter"),
    ({"segments": "grid", "seg_param": {"n_segments": 0}}, "n_segments", "must be a number in [1, 100000]"),
    ({"std": "1,0,1"}, "std", "positive"),
])
def test_segmenter_and_free_form_values_are_refused_at_resolution(layer, option, fragment):
    from explain_cli.errors import OptionError
    from explain_cli.options.settings import settings

    with pytest.raises(OptionError) as info:
        settings(layer)
    assert info.value.option == option and fragment in str(info.value), str(info.value)

