"""Every benchmark script starts: its imports resolve and ``--help`` prints its usage without running anything."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"

# One interpreter for all scripts (torch is imported once): each runs as ``__main__`` with ``--help``.
PROBE = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, {folder!r})  # as when a script runs: its folder first, for `import common`
usage = {{}}
for script in {scripts!r}:
    sys.argv, out = [script, "--help"], io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        runpy.run_path(script, run_name="__main__")
    usage[script] = out.getvalue()
print(json.dumps(usage))
"""


def test_every_benchmark_prints_its_usage_and_runs_nothing() -> None:
    scripts = sorted(str(p) for p in BENCHMARKS.glob("*.py") if p.name != "common.py")
    assert len(scripts) >= 8, scripts
    code = PROBE.format(folder=str(BENCHMARKS), scripts=scripts)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    usage = json.loads(proc.stdout.splitlines()[-1])
    without = [Path(s).name for s in scripts if not usage[s].startswith("usage:")]
    assert not without, f"no usage from {without}"


def test_gpu_check_script_parses_and_stops_on_a_machine_without_gpu(tmp_path: Path) -> None:
    script = BENCHMARKS / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=30).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path)}
    if shutil.which("nvidia-smi", path=env["PATH"]) is None:  # the CPU machines of CI: it must stop at once
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, env=env)
        assert proc.returncode == 1
        assert proc.stderr.strip() == "gpu_check: nvidia-smi not found: this machine has no NVIDIA driver"
        assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_the_search_benchmark_compares_the_three_methods(tmp_path: Path, rna3d_dir: Path) -> None:
    """One seed at the smallest budget (about 2.5 minutes): every method runs and the summary has its figures."""
    cmd = [sys.executable, str(BENCHMARKS / "hpo_search.py"), "--seeds", "1", "--fraction", "0.01", "--epochs", "2"]
    cmd += ["--data-dir", str(rna3d_dir)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = proc.stdout[proc.stdout.index("best val/tm mean +- sd") :]
    for method in ("staged", "flat_tpe", "random"):
        (row,) = [line.split() for line in summary.splitlines() if line.startswith(method)]
        assert 0.0 < float(row[1]) < 1.0 and float(row[4]) == 8.0, row  # the best val/tm, 8 trial-epochs each
