"""The layering the code relies on: the library proper (explain/ without its cli and
gallery applications) never prints and never imports the command line; `python -m explain`
is the command line."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("cli", "gallery")  # explain.cli and explain.gallery: applications, not the library


def library_modules() -> list[Path]:
    """Every module of the library proper (`__main__`, the command-line entry, excepted)."""
    pkg = ROOT / "explain"
    return sorted(p for p in pkg.rglob("*.py") if p.relative_to(pkg).parts[0] not in APPS
                  and p.name != "__main__.py")


def imported(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in `path`."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            out.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
    return out


def test_the_library_never_prints():
    offenders = []
    for path in library_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"print() in library code (use logging): {offenders}"


def test_the_library_does_not_import_the_command_line():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in library_modules() for name, line in imported(path)
                 if name.split(".")[:2] == ["explain", "cli"] or name.split(".")[0] == "cli"]
    assert not offenders, offenders


def test_python_dash_m_explain_is_the_command_line():
    done = subprocess.run([sys.executable, "-m", "explain", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: explain" in done.stdout
