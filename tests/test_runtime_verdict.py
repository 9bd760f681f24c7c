"""The ONNX export cache keyed on the graph, checked on every load, and the cached runtime verdict."""

from __future__ import annotations

import json

import pytest
import torch

from explain_cli.models import LoadedModel, select_runtime
from explain_cli.models import runtime as rt
from explain_cli.models.fingerprint import graph_fingerprint

pytest.importorskip("onnxruntime", reason="the ONNX runtime needs the onnx extra")

SOURCE = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.scale = 2.0

    def forward(self, x):
        return self.conv(x).mean((2, 3)) * self.scale{edit}
'''


def make_net(edit: str = "") -> torch.nn.Module:
    """A small conv net; ``edit`` appends to its forward's last line, as an edited file would."""
    namespace: dict = {"__name__": "user_models"}
    exec(SOURCE.format(edit=edit), namespace)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # same weights for every edit
        return namespace["Net"]().eval()


def loaded(module: torch.nn.Module) -> LoadedModel:
    return LoadedModel(module=module, source="Net", kind="module", sha256=None, weights=None, device=torch.device("cpu"))


def outputs(model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.module(x.clone())


X = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_fingerprint_follows_code_plain_attributes_and_weights_not_the_process():
    base = graph_fingerprint(loaded(make_net()))
    assert base == graph_fingerprint(loaded(make_net()))  # same definition, same weights
    assert graph_fingerprint(loaded(make_net(" + 1"))) != base  # edited code, same weights
    net = make_net()
    net.scale = 3.0  # a plain attribute
    assert graph_fingerprint(loaded(net)) != base
    net = make_net()
    with torch.no_grad():
        net.conv.bias[0] += 1e-6
    assert graph_fingerprint(loaded(net)) != base
    net = make_net()
    net.train()
    assert graph_fingerprint(loaded(net)) != base
    net = make_net()
    net.register_forward_hook(lambda module, args, out: out * 2)
    assert graph_fingerprint(loaded(net)) != base
    assert graph_fingerprint(loaded(make_net())) == base  # hooks on another instance leave this one alone


@pytest.mark.parametrize("change", ["code", "attribute"])
def test_an_edited_module_never_runs_on_the_stale_export(tmp_path, change):
    first = loaded(make_net())
    old = select_runtime(first, X[0], "onnxruntime", cache=tmp_path)
    torch.testing.assert_close(outputs(old, X), outputs(first, X), rtol=1e-4, atol=1e-5)
    if change == "code":
        edited = make_net(" + 1")
    else:
        edited = make_net()
        edited.scale = 3.0
    new = select_runtime(loaded(edited), X[0], "onnxruntime", cache=tmp_path)
    torch.testing.assert_close(outputs(new, X), outputs(loaded(edited), X), rtol=1e-4, atol=1e-5)
    assert (outputs(new, X) - outputs(first, X)).abs().max() > 0.1  # really another graph
    assert len(list(tmp_path.glob("*.onnx"))) == 2


def test_a_cached_export_is_checked_on_every_load_and_rebuilt(tmp_path):
    """Even under the right key, a graph that disagrees with eager is never used."""
    net = loaded(make_net())
    select_runtime(net, X[0], "onnxruntime", cache=tmp_path)
    (path,) = tmp_path.glob("*.onnx")
    good = path.read_bytes()
    other = select_runtime(loaded(make_net(" + 1")), X[0], "onnxruntime", cache=tmp_path / "other")
    (stale,) = (tmp_path / "other").glob("*.onnx")
    # A stale graph with a valid hash: only the probe check can catch it.
    path.write_bytes(stale.read_bytes())
    path.with_name(path.name + ".sha256").write_text((stale.with_name(stale.name + ".sha256")).read_text())
    told: list[str] = []
    again = select_runtime(net, X[0], "onnxruntime", cache=tmp_path, on_info=told.append)
    torch.testing.assert_close(outputs(again, X), outputs(net, X), rtol=1e-4, atol=1e-5)
    assert outputs(other, X).sub(outputs(net, X)).abs().max() > 0.5
    assert any("rebuilding" in m and "differ from eager" in m for m in told), told
    assert path.read_bytes() == good  # the export is deterministic: rebuilt to the same bytes


def test_a_corrupted_cached_export_is_rebuilt(tmp_path):
    net = loaded(make_net())
    select_runtime(net, X[0], "onnxruntime", cache=tmp_path)
    (path,) = tmp_path.glob("*.onnx")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    told: list[str] = []
    again = select_runtime(net, X[0], "onnxruntime", cache=tmp_path, on_info=told.append)
    torch.testing.assert_close(outputs(again, X), outputs(net, X), rtol=1e-4, atol=1e-5)
    assert any("rebuilding" in m and "sha256" in m for m in told), told
    path.write_bytes(b"not a protobuf")  # and a truncated one
    path.with_name(path.name + ".sha256").unlink()
    again = select_runtime(net, X[0], "onnxruntime", cache=tmp_path)
    torch.testing.assert_close(outputs(again, X), outputs(net, X), rtol=1e-4, atol=1e-5)


def test_the_verdict_is_measured_once_then_reused_without_probing(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "CHEAP_S", 0.0)  # the tiny net would otherwise be kept eager unmeasured
    net = loaded(make_net())
    told: list[str] = []
    first = select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8, on_info=told.append)
    assert told[0].startswith("choosing the fastest runtime") and told[-1].startswith(f"runtime: {first.runtime}")
    (verdict_file,) = tmp_path.glob("verdict-*.json")
    verdict = json.loads(verdict_file.read_text())
    assert verdict["runtime"] == first.runtime
    assert set(verdict["per_image_s"]) == {"eager", "eager+channels_last", "onnxruntime"}
    assert verdict["deviation"]["onnxruntime"] < 1e-4 and verdict["rows"] == 8

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(rt, "_measure", no_probe)
    told.clear()
    second = select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8, on_info=told.append)
    assert second.runtime == first.runtime and told == []
    assert torch.equal(outputs(second, X), outputs(first, X))  # the first run used what later runs use
    with pytest.raises(AssertionError, match="probed again"):  # another batch size is another verdict
        select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=4)


def test_the_verdict_follows_what_is_forced_and_a_bad_verdict_file_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "CHEAP_S", 0.0)
    net = loaded(make_net())
    select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8)
    (verdict_file,) = tmp_path.glob("verdict-*.json")
    data = json.loads(verdict_file.read_text())
    data["runtime"] = "onnxruntime"
    verdict_file.write_text(json.dumps(data))
    assert select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8).runtime == "onnxruntime"
    data["runtime"] = "eager"
    verdict_file.write_text(json.dumps(data))
    assert select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8).runtime == "eager"
    verdict_file.write_text("{not json")
    told: list[str] = []
    select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8, on_info=told.append)
    assert told and told[0].startswith("choosing")


def test_a_cheap_model_stays_eager_without_an_export(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "CHEAP_S", 1e3)  # every model is cheap
    chosen = select_runtime(loaded(make_net()), X[0], "auto", cache=tmp_path)
    assert chosen.runtime == "eager" and not list(tmp_path.glob("*.onnx"))
    (verdict_file,) = tmp_path.glob("verdict-*.json")
    assert "nothing to gain" in json.loads(verdict_file.read_text())["reason"]


def test_without_the_onnx_extra_auto_is_eager_with_one_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(rt, "onnx_available", lambda: False)
    told: list[str] = []
    for _ in range(2):
        chosen = select_runtime(loaded(make_net()), X[0], "auto", cache=tmp_path, on_info=told.append)
        assert chosen.runtime == "eager"
    assert told == [rt.NO_ONNX_HINT] and "explain_cli[onnx]" in told[0]


def test_a_plain_callable_runs_eager(tmp_path):
    model = LoadedModel(module=lambda x: x.mean((2, 3)), source="f", kind="callable", sha256=None, weights=None,
                        device=torch.device("cpu"))
    assert select_runtime(model, X[0], "auto", cache=tmp_path).runtime == "eager"
    assert not list(tmp_path.iterdir())


def test_first_run_that_probes_and_second_that_reuses_write_the_same_json(cli, tmp_path, monkeypatch):
    from tests.conftest import SAMPLE_IMAGES, SAMPLE_MODEL

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs = []
    for name in ("first", "second"):
        result = cli("run", SAMPLE_MODEL, SAMPLE_IMAGES[0], "--method", "ablation", "--out", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        runs.append((result.stderr, json.loads((tmp_path / name / f"{SAMPLE_IMAGES[0].stem}.ablation.json").read_text())))
    (err1, json1), (err2, json2) = runs
    assert "explain: choosing the fastest runtime" in err1 and "explain: runtime: " in err1
    assert "runtime" not in err2 and "warning" not in err1 + err2
    assert json1["model"]["runtime"] == json2["model"]["runtime"] != "auto"
    assert not any("runtime" in w for w in json1["warnings"])
    json1.pop("timing"), json2.pop("timing")
    assert json.dumps(json1, sort_keys=True) == json.dumps(json2, sort_keys=True)


def test_concurrent_first_runs_measure_once_and_agree(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(rt, "CHEAP_S", 0.0)
    measured = []
    real = rt._measure

    def counting(*args, **kwargs):
        measured.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(rt, "_measure", counting)
    net = loaded(make_net())
    chosen: list[str] = []
    threads = [threading.Thread(target=lambda: chosen.append(
        select_runtime(net, X[0], "auto", cache=tmp_path, batch_size=8).runtime)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(measured) == 1 and len(chosen) == 2 and chosen[0] == chosen[1]
