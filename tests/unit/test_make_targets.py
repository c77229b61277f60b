"""The Makefile's test targets select what their help text says."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MARKED = """import pytest


def test_plain():
    pass


@pytest.mark.slow
def test_slow():
    pass


@pytest.mark.slurm
def test_slurm():
    pass
"""


def _marker_expression(target: str) -> str:
    """The ``-m`` expression of the pytest command ``make <target>`` runs."""
    recipe = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    (line,) = [ln for ln in recipe.stdout.splitlines() if " pytest " in ln]
    words = shlex.split(line)
    return words[words.index("-m", words.index("pytest")) + 1]


def test_test_fast_runs_neither_the_slurm_nor_the_slow_tests(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n    slurm: slurm\n")
    (tmp_path / "test_marked.py").write_text(MARKED)
    cmd = [sys.executable, "-m", "pytest", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), "--collect-only", "-q"]
    cmd += ["-p", "no:cacheprovider", "-m", _marker_expression("test-fast")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    selected = [ln.split("::")[1] for ln in proc.stdout.splitlines() if "::" in ln]
    assert selected == ["test_plain"], proc.stdout + proc.stderr
