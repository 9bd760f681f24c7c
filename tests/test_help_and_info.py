"""--help in one style with panels, and the small things `explain info`, `segment` and `run` got wrong
(issue 24, items 18 and 22)."""

from __future__ import annotations

import json
import re
import tomllib

import numpy as np
import pytest

from explain_cli.options import schema
from tests.conftest import ROOT

COMMANDS = ["run", "batch", "segment", "export", "evaluate", "report", "compare", "info"]
PYTHONISH = re.compile(r"<[a-z][\w\[\], ]*>")  # <str>, <list[str]>, <int range>, <bool>


@pytest.fixture
def help80(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")

    def get(*args: str) -> str:
        r = cli(*args, "--help")
        assert r.exit_code == 0, r.stderr
        return r.stdout

    return get


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_top_level_help_names_partition_and_whole_summaries(help80, cli):
    text = help80()
    assert "partition" in text
    flat = _flat(text)
    import typer.main

    from explain_cli.cli.app import app

    group = typer.main.get_command(app)
    for name in COMMANDS:
        summary = _flat(group.commands[name].help.split("\n\n")[0])
        assert summary in flat, f"{name}: summary cut off"
    assert "..." not in text.replace("[ARGS]...", "")
    bare = cli()  # `explain` alone shows the same help
    assert bare.exit_code == 0 and bare.stdout == text
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    assert "partition" in description


@pytest.mark.parametrize("command", COMMANDS)
def test_one_metavar_style(help80, command):
    text = help80(command)
    assert not PYTHONISH.findall(text), PYTHONISH.findall(text)
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: explain {command} [OPTIONS]") and "{" not in usage
    assert all(len(line) <= 80 for line in text.splitlines())


def test_run_help_is_grouped_in_the_schema_panels(help80):
    text = help80("run")
    headings = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == ["Arguments", *schema.GROUPS]
    sections = re.split(r"^(\w+):$", text, flags=re.M)
    body = dict(zip(sections[1::2], sections[2::2]))
    for name, option in schema.OPTIONS.items():
        assert re.search(rf"(^|[ ,]){re.escape(option.flag)}\b", body[option.group], re.M), \
            f"{option.flag} not under {option.group}"
    assert "--config FILE" in body["Run"] and "--help" in body["Run"]


@pytest.mark.parametrize("command, borrowed", [
    ("evaluate", "Segment what this model sees"),
    ("segment", "grid for permutation"),
    ("export", "Resize the whole image"),
])
def test_no_help_text_borrowed_from_another_command(help80, command, borrowed):
    assert borrowed not in _flat(help80(command))


# 22. small things ---------------------------------------------------------------------------------

def test_segment_and_info_show_the_compactness_used(cli, tmp_path, small_image):
    r = cli("segment", small_image, "--out", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert "'compactness': 10.0" in r.stderr and "None" not in r.stderr
    info = cli("info")
    assert info.exit_code == 0 and "compactness=None" not in info.stdout
    assert "compactness=10 (colour) or 0.1" in _flat(info.stdout.replace("│", " "))


def test_explanation_json_records_the_compactness_used(linear_script, small_image):
    from explain_cli import explain

    (e,) = explain(str(linear_script), str(small_image), method="ablation", n_segments=12)
    assert e.to_dict()["segmentation"]["params"]["compactness"] == 10.0


def test_info_models_lists_only_formats_with_whole_install_hints(cli, monkeypatch):
    import explain_cli.models as models

    real = models.formats()
    missing = [dict(f, installed=False) if f["install"] else f for f in real]
    monkeypatch.setattr(models, "formats", lambda: missing)
    monkeypatch.setenv("COLUMNS", "80")
    r = cli("info", "--models")
    assert r.exit_code == 0, r.stderr
    assert "what it does" not in r.stdout and "baselines:" not in r.stdout  # not all of `info` again
    for f in missing:
        assert f["example"] in r.stdout
        if f["install"]:
            assert f["install"] in r.stdout  # whole, on a line of its own
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    data = json.loads(cli("info", "--models", "--json").stdout)
    assert set(data) == {"formats", "torchvision_models"}


def test_method_shap_gets_a_suggestion(cli, linear_script, small_image):
    r = cli("run", linear_script, small_image, "-m", "shap")
    assert r.exit_code == 2 and "did you mean kernelshap?" in r.stderr


def test_a_folder_given_to_run_is_its_images(cli, tmp_path, linear_script):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    r = cli("run", linear_script, folder, "--method", "ablation", "--segments", "grid", "--n-segments", "9",
            "--out", tmp_path / "out", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == ["a.ablation.json", "b.ablation.json"]
    (tmp_path / "empty").mkdir()
    r = cli("run", linear_script, tmp_path / "empty", "--out", tmp_path / "out2")
    assert r.exit_code == 2 and "matches no files" in r.stderr
