"""The command line's process settings (explain.runtime)."""
from __future__ import annotations

import platform

import pytest

from explain.runtime import tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt: glibc only")
def test_glibc_keeps_freed_memory_unless_the_user_set_malloc_variables(monkeypatch):
    assert tune_allocator() is True
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert tune_allocator() is False  # the user's setting wins: nothing changed


def test_the_command_line_applies_it(monkeypatch):
    import explain.cli.main as cli_main
    calls = []
    monkeypatch.setattr(cli_main, "tune_allocator", lambda: calls.append(1))
    assert cli_main.main(["models", "--json"]) == 0
    assert calls == [1]
