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
