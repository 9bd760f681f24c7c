"""`explain report`, `explain compare` and the batch summary's metric columns, on a tiny real batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLE_MODEL
from tests.helpers import assert_refused

EVIL = "evil<script>alert(1)<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory) -> Iterator[Path]:
    """Two inputs (one with a hostile name) × ablation and RISE, evaluated, maps saved; tiny budgets."""
    import torch

    from explain_cli.batch.run import run_batch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this tiny CNN runs 10x faster on one thread than on busy shared cores
    root = tmp_path_factory.mktemp("report")
    images = root / "images"
    images.mkdir()
    shutil.copy(ROOT / "sample_models" / "images" / "circle.png", images / "circle.png")
    shutil.copy(ROOT / "sample_models" / "images" / "cross_circle.png", images / f"{EVIL}.png")
    config = root / "compare.yaml"
    config.write_text(f"""
defaults: {{seed: 0, out: {root / 'out'}, evaluate: true, deletion: blur, eval_step: 0.25, save_map: true}}
jobs:
  - name: shapes
    model: {SAMPLE_MODEL}
    inputs: [{images}]
    out: {root / 'out' / 'shapes'}
    top_k: 2
    n_segments: 12
    methods: [{{method: ablation}}, {{method: rise, masks: 16}}]
""")
    rows, _ = run_batch(config)
    assert [r.status for r in rows] == ["done"] * 4, [r.error for r in rows]
    yield root
    torch.set_num_threads(threads)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        for name in ("src", "href"):
            if attrs.get(name) is not None:
                self.urls.append(attrs[name])


def test_batch_report_is_offline_linked_and_escaped(batch_dir, cli):
    out = batch_dir / "out"
    result = cli("batch", batch_dir / "compare.yaml", "--report", "-q")  # all complete: rows come from the JSONs
    assert result.exit_code == 0, result.stderr
    page = out / "report.html"
    assert str(page) in result.stdout.splitlines()
    html = page.read_text(encoding="utf-8")
    for bad in ("http://", "https://", "//"):
        assert bad not in html  # no network, no protocol-relative URL, no JS line comment either
    parser = _Links()
    parser.feed(html)
    imgs = [a["src"] for t, a in parser.tags if t == "img"]
    assert len(imgs) == 4  # one map per (input, method)
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        assert (out / unquote(parts.path)).is_file(), url
    assert "x" not in imgs  # the file name's <img src=x> is text, not a tag
    assert [t for t, _ in parser.tags].count("script") == 1  # only the sorting script
    assert EVIL not in html and "evil&lt;script&gt;alert(1)&lt;img src=x" in html
    assert "aria-sort" in html and 'class="sortable' in html and "addEventListener" in html
    assert "deletion AUC" in html and "summary.json" in html and "torch" in html


def test_summary_rows_carry_first_target_metrics(batch_dir):
    out = batch_dir / "out"
    rows = json.loads((out / "summary.json").read_text())["rows"]
    for row in rows:
        doc = json.loads(Path(next(p for p in row["outputs"] if p.endswith(".json"))).read_text())
        assert row["deletion_auc"] == doc["evaluation"]["deletion_auc"][0]
        assert row["random_insertion_auc"] == doc["evaluation"]["random_insertion_auc"][0]
        assert row["pointing_hit"] is None and row["energy_in_mask"] is None  # no --mask
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[-6:] == ["deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc",
                           "pointing_hit", "energy_in_mask"]


def test_report_skips_other_json_and_counts_explanations(batch_dir, tmp_path):
    from explain_cli.render.records import read_explanations
    from explain_cli.render.report import write_report

    folder = tmp_path / "mixed"
    shutil.copytree(batch_dir / "out" / "shapes", folder / "deep" / "shapes")
    (folder / "junk.json").write_text("{not json")
    (folder / "other.json").write_text(json.dumps({"method": "lime"}))  # no schema_version
    assert len(read_explanations([folder])) == 4
    html = write_report(folder).read_text()
    assert "4 explanations of 2 inputs" in html


def test_report_and_compare_refuse_what_they_cannot_use(batch_dir, tmp_path, cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("report", empty)
    assert_refused(result, "no explanation JSON")
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    result = cli("compare", tmp_path / "other.json")
    assert_refused(result, "not an explanation JSON")


def test_compare_groups_by_input_and_needs_saved_maps(batch_dir, tmp_path, cli):
    from PIL import Image

    shapes = batch_dir / "out" / "shapes"
    result = cli("compare", shapes, "--out", tmp_path / "all.png")
    assert result.exit_code == 0, result.stderr
    one = cli("compare", shapes / "circle.ablation.json", shapes / "circle.rise.json", "--out", tmp_path / "one.png")
    assert one.exit_code == 0, one.stderr
    with Image.open(tmp_path / "all.png") as both, Image.open(tmp_path / "one.png") as single:
        assert both.height > 1.8 * single.height  # two inputs stacked, each with 2 targets
        assert np.asarray(single.convert("L")).std() > 10
    copy = tmp_path / "nomap"
    copy.mkdir()
    shutil.copy(shapes / "circle.rise.json", copy)
    result = cli("compare", copy / "circle.rise.json")
    assert "circle.rise.npy" in assert_refused(result, "--save-map")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(batch_dir, tmp_path):
    from PIL import Image

    from explain_cli.render.report import write_report

    page = write_report(batch_dir / "out")
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", f"--screenshot={shot}",
                    "--window-size=1200,900", page.resolve().as_uri()], check=True, capture_output=True, timeout=60)
    with Image.open(shot) as image:
        grey = np.asarray(image.convert("L"), dtype=float)
    assert grey.std() > 20  # text, tables and heatmaps drawn, not a blank page
    assert (grey < 100).mean() > 0.01  # the dark heatmap thumbnails loaded (a broken image is near-white)


def test_report_formats_counts_baselines_paths_warnings_and_folders(batch_dir, tmp_path):
    """Evaluations as whole numbers, no 'None' baseline, paths that wrap at separators, whole warnings,
    and two runs of one method on one input told apart by their folders."""
    from explain_cli.render.report import write_report

    doc = json.loads((batch_dir / "out" / "shapes" / "circle.ablation.json").read_text())
    warning = "a long warning that says exactly what to change " * 4
    doc.update(evaluations=1024, baseline=None, warnings=[warning])
    doc["input"]["path"] = "some_folder/with-long_names/circle.png"
    for run in ("run-a", "run-b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "circle.ablation.json").write_text(json.dumps(doc))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "1,024" in html and "e+0" not in html
    assert ">None<" not in html and "None" not in html.split("<h2>Methods</h2>")[1].split("</table>")[0]
    assert "some_<wbr>folder/<wbr>with-long_<wbr>names/<wbr>circle.png" in html
    assert f"⚠ {warning}</div>" in html  # whole, not cut to "…"
    assert "<code>run-a</code>" in html and "<code>run-b</code>" in html
