"""The rules every message shares: one 'did you mean' and one exception-on-one-line."""

from __future__ import annotations

import torch

from explain_cli.errors import one_line, suggest


def test_suggest_names_close_choices_as_given():
    assert suggest("lyme", ["lime", "rise"]) == "did you mean lime?"
    assert suggest("rdbu_r", ["RdBu_r", "inferno"], quote=True) == "did you mean 'RdBu_r'?"
    assert suggest("beat", ["ant", "bee", "beet", "beets"], n=3) == "did you mean beet, beets?"
    assert suggest("zzz", ["lime"]) == ""


def test_one_line_keeps_the_message_and_drops_traces():
    assert one_line(ValueError("bad\n   header")) == "bad header"
    assert one_line(KeyError()) == "KeyError"
    assert one_line("") == ""
    cpp = RuntimeError("shape mismatch\nException raised from foo at bar.cpp:1\nframe #0: baz")
    assert one_line(cpp) == "shape mismatch"


def test_one_line_finds_torchscripts_own_message():
    @torch.jit.script
    def fails(x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1:
            raise RuntimeError("weights not calibrated")
        return x

    try:
        fails(torch.zeros(1))
    except Exception as exc:  # noqa: BLE001 - whatever TorchScript raises
        assert one_line(exc).endswith("weights not calibrated"), one_line(exc)
        assert "Traceback" not in one_line(exc)
