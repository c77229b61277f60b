"""Every benchmark script starts: its imports resolve and ``--help`` prints its usage without running anything."""

from __future__ import annotations

import json
import re
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


@pytest.mark.slow
def test_the_quality_benchmark_runs_the_product_under_a_wall_clock_budget(tmp_path: Path, rna3d_dir: Path) -> None:
    """18 s of training (about 2.5 minutes in all): ``trainer.max_time`` ends the run before its epochs, then the
    validation split is predicted and scored twice through the entry points, and quality.json holds the figures."""
    cmd = [sys.executable, str(BENCHMARKS / "quality.py"), "--minutes", "0.3", "--epochs-per-minute", "20"]
    cmd += ["--data-dir", str(rna3d_dir), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "quality.json").read_text())
    train = report["train"]
    assert (
        train["command"].startswith("python -m rna_hpc.train ") and "trainer.max_time=00:00:00:18" in train["command"]
    )
    assert train["max_epochs"] == 6 and train["stopped_by"] == "max_time" and train["epochs"] < 6
    assert train["val_curve"][-1]["step"] == train["steps"] > 0  # the step where max_time stopped it was validated
    assert (tmp_path / "train" / "ckpt" / "best.ckpt").is_file()
    for name, candidates in (("model_only", "model"), ("ranked", "model,template")):
        scored = report[name]
        assert scored["candidates"] == candidates and scored["n_targets"] == len(scored["targets"]) == 18
        assert [c.split()[:3] for c in scored["commands"]] == [
            ["python", "-m", "rna_hpc.predict"],
            ["python", "-m", "rna_hpc.evaluate"],
        ]
        assert all(0.0 < scored["mean"][m]["tm"] < 1.0 for m in ("model", "helix", "ss", "template"))
    lines = proc.stdout.splitlines()
    assert any(line.startswith("model samples only") for line in lines)
    assert sum(1 for line in lines if re.match(r"\S+\s+\d+\s+0\.\d{3}\s+0\.\d{3}", line)) == 18  # per-target rows
