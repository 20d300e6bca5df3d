"""The README's set-up leaves `explain` runnable in a new shell: `make setup` links the
environment's console script into a folder that a login shell searches."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(ROOT), *args], capture_output=True,
                          text=True, timeout=60)


def login_path() -> list[str]:
    """PATH as a new login shell sets it, from nothing inherited."""
    out = subprocess.run(["env", "-i", f"HOME={Path.home()}", "bash", "-lc", "echo $PATH"],
                         capture_output=True, text=True, timeout=60).stdout
    return out.strip().splitlines()[-1].split(":")


def test_the_default_launcher_folder_is_on_a_login_shells_path():
    bindir = make("--eval", "print-bindir: ; @echo $(BINDIR)", "print-bindir").stdout.strip()
    assert bindir and bindir in login_path()


def test_launcher_links_the_environments_explain_and_a_new_shell_runs_it(tmp_path):
    venv = Path(sys.prefix)  # read only: the target links to its console script
    bindir = tmp_path / "bin"
    done = make("launcher", f"VENV={venv}", f"BINDIR={bindir}")
    assert done.returncode == 0, done.stderr
    link = bindir / "explain"
    assert link.is_symlink() and Path(os.readlink(link)) == venv / "bin" / "explain"
    shell = subprocess.run(["env", "-i", f"HOME={Path.home()}", f"PATH={bindir}:/usr/bin:/bin",
                            "bash", "-c", "command -v explain && explain --help"],
                           capture_output=True, text=True, timeout=300)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith(str(link)) and "usage: explain" in shell.stdout
    assert make("launcher", f"VENV={venv}", f"BINDIR={bindir}").returncode == 0  # idempotent


def test_launcher_leaves_a_file_of_another_program_alone(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "explain").write_text("#!/bin/sh\necho theirs\n")
    done = make("launcher", f"VENV={sys.prefix}", f"BINDIR={bindir}")
    assert done.returncode == 0 and "not ours" in done.stdout
    assert (bindir / "explain").read_text() == "#!/bin/sh\necho theirs\n"


def test_make_bench_runs_scripts_that_exist():
    import re
    recipe = (ROOT / "Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    scripts = re.findall(r"benchmarks/\S+\.py", recipe)
    assert scripts and all((ROOT / s).is_file() for s in scripts), scripts


def test_package_data_covers_every_data_file_of_the_package():
    """A wheel holds what the globs of pyproject.toml name: every file under explain/ that
    is not Python (samples, cards, weights, the editor's page; cli/ and gallery/ are
    explain/cli and explain/gallery) must match one, and every glob must match something."""
    import tomllib
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["explain"]
    pkg = ROOT / "explain"
    matched = {g: {p.relative_to(pkg).as_posix() for p in pkg.glob(g) if p.is_file()}
               for g in globs}
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "explain", "cli", "gallery"],
                             capture_output=True, text=True, check=True).stdout.split()
    data = {f.removeprefix("explain/") for f in tracked if not f.endswith(".py")
            and (ROOT / f).is_file() and not (ROOT / f).is_symlink()}
    assert not data - set().union(*matched.values()), sorted(data - set().union(*matched.values()))
    assert all(matched.values()), [g for g, files in matched.items() if not files]
