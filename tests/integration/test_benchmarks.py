"""Every benchmark script starts: its imports resolve and ``--help`` prints its usage without running anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
