"""Issue 24's audit: the gaps found when each item was checked again as a user would."""

from __future__ import annotations

import signal

import pytest


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_outside_a_commands_guard_still_exits_128_plus_signum(signame, cli, monkeypatch):
    """Item 40: Typer turns an interrupt outside the command's guard into Abort (exit 130, no word)."""
    import explain_cli.cli.info as info
    from explain_cli.fileio import TerminatedBySignal

    signum = getattr(signal, signame)

    def killed(**kwargs):
        raise TerminatedBySignal(signum)

    monkeypatch.setattr(info, "show", killed)
    result = cli("info")
    assert result.exit_code == 128 + signum, result
    assert result.stderr.strip() == f"explain: error: terminated by {signame}", result.stderr


def test_timm_default_weights_offline_fail_in_seconds_without_the_hubs_retries(monkeypatch):
    """Item 29: uncached DEFAULT weights offline took 54 s of huggingface_hub retries, a line each."""
    import socket
    import time

    timm = pytest.importorskip("timm", reason="timm:NAME models need the timm extra")
    import huggingface_hub

    from explain_cli.errors import ExplainError
    from explain_cli.models import load_model

    def no_network(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    real = timm.create_model

    def create(name, pretrained=False, **kwargs):
        if pretrained:
            pytest.fail("the Hub was asked although it cannot be reached")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(timm, "create_model", create)
    start = time.perf_counter()
    with pytest.raises(ExplainError, match="huggingface.co unreachable.*Hugging Face cache"):
        load_model("timm:resnet18", weights="DEFAULT", device="cpu")
    assert time.perf_counter() - start < 10


def test_timm_cached_default_weights_need_no_network(monkeypatch):
    import socket

    timm = pytest.importorskip("timm", reason="timm:NAME models need the timm extra")
    import huggingface_hub

    from explain_cli.models import load_model

    class Loaded(Exception):
        pass

    def create(name, pretrained=False, **kwargs):
        raise Loaded(name)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, f, **k: f"/cache/{repo}/{f}")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed although cached"))
    monkeypatch.setattr(timm, "create_model", create)
    with pytest.raises(Loaded):
        load_model("timm:resnet18", weights="DEFAULT", device="cpu")
