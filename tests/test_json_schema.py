"""Every method's JSON document validates against schema/explanation.schema.json; docs/reference.md agrees."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch

from explain_cli import explain
from tests.conftest import ROOT, make_linear
from tests.helpers import check_schema

SCHEMA_PATH = ROOT / "schema" / "explanation.schema.json"


RUNS = {
    "kernelshap": {"samples": 64},
    "partition": {"samples": 64},
    "lime": {"samples": 64},
    "rise": {"masks": 64},
    "ablation": {},
}


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    model = make_linear()
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))
    docs = {}
    for method, extra in RUNS.items():
        (e,) = explain(model, x, method=method, segments="grid", n_segments=9, top_k=2, **extra)
        docs[method] = e.to_dict()
    two = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    (p,) = explain(model, [two[0], two[1]], method="permutation", segments="grid", n_segments=9, repeats=2)
    docs["permutation"] = p.to_dict()
    return docs


@pytest.mark.parametrize("method", [*RUNS, "permutation"])
def test_every_method_validates(method, documents, validator):
    doc = documents[method]
    check_schema(validator, doc)
    assert doc["method"] == method
    json.dumps(doc, allow_nan=False)  # what save() writes: no NaN anywhere
    n = doc["segmentation"]["n_segments"]
    for t in doc["targets"]:
        assert [s["id"] for s in t["segments"]] == list(range(n))
        assert sum(s["area"] for s in t["segments"]) == 16 * 16
    if method == "kernelshap":
        assert all("stderr" in s for t in doc["targets"] for s in t["segments"])
    if method == "permutation":
        assert len(doc["inputs"]) == 2
        assert all("std" in s for t in doc["targets"] for s in t["segments"])

    else:
        assert isinstance(doc["baseline"], str)


def test_permutation_records_no_baseline(documents):
    # docs/reference.md ("null for permutation, which has none") and Explanation.baseline's comment: permutation
    # replaces a group with another input's pixels, never with a baseline
    assert documents["permutation"]["baseline"] is None


def test_cli_file_validates(cli, linear_script, small_image, tmp_path, validator):
    r = cli("run", linear_script, small_image, "--method", "ablation", "--out", tmp_path, "--quiet",
            "--segments", "grid", "--n-segments", "6", "--save-map")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "small.ablation.json").read_text())
    check_schema(validator, doc)
    assert doc["model"]["sha256"] and doc["targets"][0]["label"] in ("ant", "bee", "cat")


def test_schema_catches_drift(documents, validator):
    base = documents["kernelshap"]
    check_schema(validator, base)
    for mutate in (
        lambda d: d.update(unexpected_key=1),  # a new top-level key not in the schema
        lambda d: d["targets"][0]["segments"][0].update(weight=1.0),  # a new per-segment key
        lambda d: d["targets"][0]["segments"][0].pop("bbox"),  # a missing required key
        lambda d: d.pop("warnings"),
        lambda d: d.update(baseline=0),  # baseline: string or null
        lambda d: d.update(extra=[1]),  # extra: an object
        lambda d: d.update(evaluation="good"),  # evaluation: an object
    ):
        doc = copy.deepcopy(base)
        mutate(doc)
        assert not validator.is_valid(doc), "the schema accepted a drifted document"
    ok = copy.deepcopy(base)
    ok["evaluation"] = {"deletion_auc": 0.1, "anything": {"nested": [1, 2]}}
    ok.pop("extra", None)
    check_schema(validator, ok)


def _readme_table_keys() -> set[str]:
    text = (ROOT / "docs" / "reference.md").read_text()
    start = text.index("## The JSON file")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    keys: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| key") and not line.startswith("|---"):
            first = line.split("|")[1]
            keys |= set(re.findall(r"`([a-z_]+)(?:\[\])?`", first))
    return keys


def test_readme_table_mentions_every_top_level_key():
    schema = json.loads(SCHEMA_PATH.read_text())
    readme = _readme_table_keys()
    assert "schema_version" in readme  # the table was found
    missing = sorted(set(schema["properties"]) - readme)
    assert not missing, f"docs/reference.md's JSON table does not mention: {missing}"
    unknown = sorted(k for k in readme - set(schema["properties"]) if not k.startswith("targets"))
    assert not unknown, f"docs/reference.md's JSON table names keys the schema lacks: {unknown}"


def test_load_explanation_reads_back_what_save_wrote(tmp_path):
    from explain_cli.errors import ExplainError
    from explain_cli.result import load_explanation

    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(5))
    (e,) = explain(make_linear(), x, method="ablation", segments="grid", n_segments=9)
    (path,) = [p for p in e.save(tmp_path) if p.suffix == ".json"]
    assert load_explanation(path) == e.to_json()  # the inverse of to_json, checked against the schema
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExplainError, match="bad.json is not a readable JSON file"):
        load_explanation(tmp_path / "bad.json")
