"""Model formats: same answers in every format, nothing executed from a malicious file, metadata checked."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from explain_cli.errors import ExplainError
from explain_cli.models import LoadedModel, formats, load_model, select_runtime
from tests.conftest import ROOT, SAMPLE_MODEL, make_linear

SAMPLE_PT2 = ROOT / "sample_models" / "shapes_cnn.pt2"
SAMPLE_ONNX = ROOT / "sample_models" / "shapes_cnn.onnx"


def run(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.module(x.to(model.device)).float().cpu()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def eager_outputs(batch) -> torch.Tensor:
    return run(load_model(str(SAMPLE_MODEL), device="cpu"), batch)


def one_line_error(source: str, **kwargs) -> str:
    with pytest.raises(ExplainError) as info:
        load_model(source, device="cpu", **kwargs)
    message = str(info.value)
    assert "\n" not in message and message, message
    return message


# --------------------------------------------------------------------------- same answers


@pytest.mark.parametrize("path", [SAMPLE_PT2, SAMPLE_ONNX], ids=["pt2", "onnx"])
def test_sample_model_gives_the_same_outputs_in_every_format(path, batch, eager_outputs):
    if path.suffix == ".onnx":
        pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra")
    reference = load_model(str(SAMPLE_MODEL), device="cpu")
    model = load_model(str(path), device="cpu")
    assert model.kind == path.suffix[1:]
    assert model.labels == reference.labels == ["circle", "square", "triangle", "cross"]
    assert model.preprocess == reference.preprocess
    assert model.in_channels == 3
    torch.testing.assert_close(run(model, batch), eager_outputs, rtol=1e-4, atol=1e-4)


def test_format_is_detected_by_content_not_name(tmp_path, batch, eager_outputs):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(SAMPLE_PT2.read_bytes())
    model = load_model(str(renamed), device="cpu")
    assert model.kind == "pt2"
    torch.testing.assert_close(run(model, batch), eager_outputs, rtol=1e-4, atol=1e-4)


def test_torchvision_safetensors_weights_equal_state_dict(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch", reason="safetensors weights need the safetensors extra")
    import torchvision

    torch.manual_seed(3)
    module = torchvision.models.squeezenet1_1(num_classes=7).eval()
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    torch.save(state, tmp_path / "w.pth")
    safetensors.save_file(state, str(tmp_path / "w.bin"))  # sniffed by content, not suffix
    x = torch.rand(2, 3, 64, 64)
    a = load_model("torchvision:squeezenet1_1", weights=str(tmp_path / "w.pth"), device="cpu")
    b = load_model("torchvision:squeezenet1_1", weights=str(tmp_path / "w.bin"), device="cpu")
    assert a.labels is None  # 7 classes: ImageNet names no longer apply
    torch.testing.assert_close(run(a, x), run(b, x), rtol=0, atol=0)
    torch.testing.assert_close(run(a, x), run(LoadedModel(module, "live", "module", None, None, torch.device("cpu")), x))


def test_random_weights_are_noted_loudly():
    model = load_model("torchvision:squeezenet1_1", device="cpu")
    assert any("random weights" in n for n in model.notes)
    assert model.describe()["notes"] == model.notes
    assert model.labels is not None and len(model.labels) == 1000 and model.labels[0] == "tench"


def test_timm_model_with_weights_file_and_data_config(tmp_path):
    timm = pytest.importorskip("timm", reason="timm:NAME models need the timm extra")
    random = load_model("timm:test_resnet", device="cpu", seed=1)
    assert any("random weights" in n for n in random.notes)
    assert random.labels is not None and random.labels[0] == "tench"  # pretrained cfg says imagenet-1k
    assert random.preprocess.crop == (160, 160) and random.preprocess.resize == int(160 / 0.95)
    torch.save(random.module.state_dict(), tmp_path / "w.pth")
    loaded = load_model("timm:test_resnet", weights=str(tmp_path / "w.pth"), device="cpu")
    assert loaded.notes == [] and loaded.sha256
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(run(loaded, x), run(random, x), rtol=0, atol=0)
    assert "did you mean" in one_line_error("timm:test_resnt")
    assert timm.is_model("test_resnet")


def test_default_weights_offline_is_one_line_and_stdout_stays_clean(monkeypatch, capsys):
    import urllib.error

    def offline(url, *args, **kwargs):
        print(f'Downloading: "{url}"')  # what torch.hub writes to stdout before it fails
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    message = one_line_error("torchvision:squeezenet1_1", weights="DEFAULT")
    assert "checkpoints" in message and "pass `weights` FILE" in message
    assert capsys.readouterr().out == ""


def test_timm_default_weights_offline_names_the_cache(monkeypatch, capsys):
    timm = pytest.importorskip("timm", reason="timm:NAME models need the timm extra")

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            print("fetching ...")
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    message = one_line_error("timm:test_resnet", weights="DEFAULT")
    assert "Hugging Face cache" in message and "pass `weights` FILE" in message
    assert capsys.readouterr().out == ""


def test_missing_onnxruntime_is_one_line_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    assert "pip install 'explain_cli[onnx]'" in one_line_error(str(SAMPLE_ONNX))


def test_formats_lists_every_format_and_whether_it_is_installed():
    table = {f["format"]: f for f in formats()}
    assert set(table) >= {"pt2", "onnx", "torchscript", "torchvision", "timm", "safetensors"}
    assert table["pt2"]["installed"] and table["onnx"]["install"] == "pip install 'explain_cli[onnx]'"


def test_imagenet_labels_by_name_and_files(tmp_path):
    from explain_cli.models.labels import resolve_labels

    assert resolve_labels("imagenet")[:2] == ["tench", "goldfish"]
    assert resolve_labels(None, ["a"]) == ["a"]
    (tmp_path / "l.txt").write_text("x\ny\n")
    assert resolve_labels(str(tmp_path / "l.txt")) == ["x", "y"]
    with pytest.raises(ExplainError, match="or `labels` imagenet"):
        resolve_labels(str(tmp_path / "missing.txt"))


# --------------------------------------------------------------------------- runtimes


def test_runtime_auto_matches_eager_and_caches_the_export(tmp_path, batch, eager_outputs):
    pytest.importorskip("onnxruntime", reason="the ONNX candidate needs the onnx extra")
    model = load_model(str(SAMPLE_MODEL), device="cpu")
    chosen = select_runtime(model, batch[0], "auto", cache=tmp_path)
    assert chosen.runtime in ("eager", "eager+channels_last", "onnxruntime")
    assert model.runtime == "eager" and model.module is not chosen.module or chosen.runtime == "eager"
    torch.testing.assert_close(run(chosen, batch), eager_outputs, rtol=1e-4, atol=1e-4)
    assert len(list(tmp_path.glob("*.onnx"))) == 1  # exported once, keyed by weights and shape
    forced = select_runtime(model, batch[0], "onnxruntime", cache=tmp_path)
    assert forced.runtime == "onnxruntime"
    torch.testing.assert_close(run(forced, batch), eager_outputs, rtol=1e-4, atol=1e-4)


def test_runtime_names_are_checked():
    from explain_cli.errors import OptionError

    model = load_model(str(SAMPLE_MODEL), device="cpu")
    with pytest.raises(OptionError, match="runtime"):
        select_runtime(model, torch.zeros(3, 64, 64), "tensorrt")


def test_onnx_with_a_fixed_batch_axis_is_run_in_chunks(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra")
    module = make_linear().eval()
    path = tmp_path / "fixed.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(3, 3, 16, 16),), str(path), dynamo=False, input_names=["x"])
    model = load_model(str(path), device="cpu")
    assert model.module.fixed_batch == 3
    x = torch.randn(7, 3, 16, 16)
    with torch.inference_mode():
        expected = module(x)
    torch.testing.assert_close(run(model, x), expected, rtol=1e-4, atol=1e-4)
    assert model.in_channels == 3 and model.labels is None


# --------------------------------------------------------------------------- metadata


def scripted_with(tmp_path: Path, meta: object) -> Path:
    path = tmp_path / "m.pt"
    text = meta if isinstance(meta, str) else json.dumps(meta)
    torch.jit.script(make_linear()).save(str(path), _extra_files={"explain_cli.json": text})
    return path


BAD_METADATA = {
    "std zero": ({"preprocess": {"std": [0, 0, 0]}}, "preprocess.std: must be positive, got [0, 0, 0]"),
    "mean nan": ({"preprocess": {"mean": [0.5, "x", 0.5]}}, "preprocess.mean: must be a non-empty list of finite numbers"),
    "size negative": ({"preprocess": {"size": [-1, 16]}}, "preprocess.size: must be a positive int"),
    "resize float": ({"preprocess": {"resize": 1.5}}, "preprocess.resize: must be a positive integer"),
    "interpolation unknown": ({"preprocess": {"interpolation": "lanczos"}},
                              "preprocess.interpolation: must be one of bilinear, bicubic, nearest, nearest-exact, got 'lanczos'"),
    "labels not strings": ({"labels": [1, 2, 3]}, "labels: must be a non-empty list of strings"),
    "channels zero": ({"in_channels": 0}, "in_channels: must be a positive integer, got 0"),
    "channels bool": ({"in_channels": True}, "in_channels: must be a positive integer, got true"),
    "not an object": ([1, 2], "must be a JSON object"),
    "not json": ("{labels:", "is not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_embedded_metadata_names_the_file_and_key(case, tmp_path):
    meta, expected = BAD_METADATA[case]
    path = scripted_with(tmp_path, meta)
    message = one_line_error(str(path))
    assert message.startswith(f"model {path}: ") and expected in message, message


def test_metadata_error_has_the_documented_form(tmp_path):
    path = scripted_with(tmp_path, {"preprocess": {"std": [0, 0, 0]}})
    assert one_line_error(str(path)) == f"model {path}: explain_cli.json: preprocess.std: must be positive, got [0, 0, 0]"


def test_onnx_metadata_is_validated_too(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX models need the onnx extra")
    import onnx

    proto = onnx.load(str(SAMPLE_ONNX))
    next(p for p in proto.metadata_props if p.key == "explain_cli.json").value = json.dumps({"labels": "circle"})
    path = tmp_path / "bad.onnx"
    onnx.save(proto, str(path))
    assert "explain_cli.json: labels: must be a non-empty list of strings" in one_line_error(str(path))


# --------------------------------------------------------------------------- malicious files


class Payload:
    """Unpickling this creates the folder ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.makedirs, (str(self.marker),))


def torch_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rewrite_pt2(src: Path, dst: Path, edit) -> Path:
    """Copy a .pt2 archive, letting ``edit(entries)`` change the relative-name -> bytes table."""
    with zipfile.ZipFile(src) as archive:
        root = archive.namelist()[0].split("/")[0] + "/"
        entries = {n[len(root) :]: archive.read(n) for n in archive.namelist()}
    edit(entries)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(root + name, data)
    return dst


def _edit_json(entries: dict, name: str, change) -> None:
    doc = json.loads(entries[name])
    change(doc)
    entries[name] = json.dumps(doc).encode()


def _pickled_weight(marker):
    def edit(entries):
        def change(doc):
            doc["config"]["features.0.weight"]["use_pickle"] = True
        _edit_json(entries, "data/weights/model_weights_config.json", change)
        entries["data/weights/weight_0"] = torch_pickle(Payload(marker))
    return edit


def _constant(prefix, data_of):
    def factory(marker):
        def edit(entries):
            def change(doc):
                doc["config"]["evil"] = {"path_name": f"{prefix}0", "is_param": False, "use_pickle": True, "tensor_meta": None}
            _edit_json(entries, "data/constants/model_constants_config.json", change)
            entries[f"data/constants/{prefix}0"] = data_of(marker)
        return edit
    return factory


def _program(change_of):
    def factory(marker):
        return lambda entries: _edit_json(entries, "models/model.json", lambda doc: change_of(doc, marker))
    return factory


def _set_first_expr(doc, marker):
    values = doc["graph_module"]["graph"]["tensor_values"]
    values["x"]["sizes"][0]["as_expr"]["expr_str"] = f"open({str(marker)!r}, 'w')"


def _set_first_name(doc, marker):
    node = doc["graph_module"]["graph"]["nodes"][0]
    node["outputs"][0]["as_tensor"]["name"] = f"x = open({str(marker)!r}, 'w'); y"


def _set_first_target(doc, marker):
    doc["graph_module"]["graph"]["nodes"][0]["target"] = "torch.load"


MALICIOUS_PT2 = {
    "sample inputs pickle": lambda m: lambda e: e.__setitem__("data/sample_inputs/model.pt", torch_pickle(((Payload(m),), {}))),
    "use_pickle weight": _pickled_weight,
    "opaque object constant": _constant("opaque_obj_", lambda m: pickle.dumps(Payload(m))),
    "custom object constant": _constant("custom_obj_", lambda m: pickle.dumps(Payload(m))),
    "pickled tensor constant": _constant("tensor_", lambda m: torch_pickle(Payload(m))),
    "legacy weights file": lambda m: lambda e: e.__setitem__("data/weights/model.pt", torch_pickle({"w": Payload(m)})),
    "aotinductor library": lambda m: lambda e: e.__setitem__("data/aotinductor/model/model.so", b"\x7fELF"),
    "sympy expression": _program(_set_first_expr),
    "node name code": _program(_set_first_name),
    "node target torch.load": _program(_set_first_target),
    "guards code": _program(lambda doc, m: doc.__setitem__("guards_code", [f"open({str(m)!r}, 'w')"])),
}


@pytest.mark.parametrize("case", list(MALICIOUS_PT2))
def test_malicious_pt2_is_refused_and_nothing_runs(case, tmp_path):
    marker = tmp_path / "PWNED"
    path = rewrite_pt2(SAMPLE_PT2, tmp_path / "evil.pt2", MALICIOUS_PT2[case](marker))
    message = one_line_error(str(path))
    assert "refused" in message or "not" in message, message
    assert not marker.exists()


@pytest.mark.parametrize("case", ["sample inputs pickle", "opaque object constant"])
def test_the_pt2_payloads_are_live_under_plain_torch_export_load(case, tmp_path, caplog):
    """Control: torch.export.load itself would run these payloads, so the refusals above matter."""
    marker = tmp_path / "PWNED"
    path = rewrite_pt2(SAMPLE_PT2, tmp_path / "evil.pt2", MALICIOUS_PT2[case](marker))
    try:
        torch.export.load(str(path))
    except Exception:
        pass  # the payload returns a file object where torch expects tensors; it has run by then
    assert marker.exists()


def test_pickle_payload_as_model_file_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    for name, data in (("zip.pt", torch_pickle(Payload(marker))), ("raw.pt", pickle.dumps(Payload(marker)))):
        (tmp_path / name).write_bytes(data)
        assert "pickled" in one_line_error(str(tmp_path / name))
    assert not marker.exists()


@pytest.mark.parametrize("arch", ["torchvision:squeezenet1_1", "timm:test_resnet"])
def test_pickle_payload_as_weights_is_refused(arch, tmp_path):
    if arch.startswith("timm:"):
        pytest.importorskip("timm", reason="timm:NAME models need the timm extra")
    marker = tmp_path / "PWNED"
    (tmp_path / "w.pth").write_bytes(torch_pickle({"conv.weight": Payload(marker)}))
    assert "pickled" in one_line_error(arch, weights=str(tmp_path / "w.pth"))
    assert not marker.exists()


def test_export_refuses_torchscript_to_pt2_with_a_fix(tmp_path):
    from explain_cli.models.export import export_model

    model = load_model(str(SAMPLE_MODEL), device="cpu")
    with pytest.raises(ExplainError, match="rebuild the nn.Module"):
        export_model(model, tmp_path / "x.pt2", example_shape=(3, 64, 64))
    assert not (tmp_path / "x.pt2").exists()


@pytest.mark.parametrize("method", ["kernelshap", "partition"])
def test_sample_model_in_every_format_gives_the_same_explanation(method):
    """TorchScript, torch.export and ONNX copies of the sample model: same scores for the same options and seed."""
    from explain_cli import explain

    image = ROOT / "sample_models" / "images" / "cross_circle.png"
    sources = [ROOT / "sample_models" / f"shapes_cnn.{ext}" for ext in ("pt", "pt2", "onnx")]
    if importlib.util.find_spec("onnxruntime") is None:
        sources = sources[:2]  # the onnx extra is not installed here
    results = [explain(str(src), image, method=method, samples=300, top_k=2, seed=3)[0] for src in sources]
    for other in results[1:]:
        assert other.targets == results[0].targets and other.labels == results[0].labels
        np.testing.assert_allclose(other.scores, results[0].scores, atol=1e-5)
