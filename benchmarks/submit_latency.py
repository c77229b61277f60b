"""Submission latency on the cluster this host submits to (the local one from ``slurm/start.sh`` by default).

Prints, in seconds: (1) the pre-submission check of a sweep (``python -m rna_hpc.train -m launcher=slurm`` with
``hydra.launcher.dry_run=true``; composes and validates every job, submits nothing) for 1 and 8 jobs, and the
interpreter start-up alone; (2) submitit round trips of a trivial function: sbatch call, result available, sacct
final state; (3) an array of 4 trivial jobs. Needs ``sinfo``/``sbatch``; run from the repository root.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return time.perf_counter() - start


def preflight_latency(out: Path, repeats: int) -> None:
    base = [sys.executable, "-m", "rna_hpc.train", "-m", "launcher=slurm", "hydra.launcher.dry_run=true"]
    base.append(f"paths.shared_dir={out / 'shared'}")
    startup = min(_seconds([sys.executable, "-c", "import rna_hpc.train"]) for _ in range(repeats))
    print(f"interpreter + import rna_hpc.train           {startup:6.2f} s")
    for n in (1, 8):
        sweep = "seed=" + ",".join(str(i) for i in range(n))
        best = min(_seconds(base + [sweep, f"hydra.sweep.dir={out / f'dry{n}'}"]) for _ in range(repeats))
        print(f"dry run, {n} job(s): compose + validate + plan {best:6.2f} s")


def _trivial(x: int) -> int:
    return x + 1


def _final_state(job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True)
        state = out.stdout.strip().split("\n")[0].split(" ")[0] if out.stdout.strip() else ""
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return state
        time.sleep(0.1)
    return "UNKNOWN"


def submitit_latency(out: Path, repeats: int) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=out / "submitit" / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_signal_delay_s=60)
    rows = []
    for i in range(repeats):
        t0 = time.perf_counter()
        job = executor.submit(_trivial, i)
        t1 = time.perf_counter()
        assert job.result() == i + 1
        t2 = time.perf_counter()
        state = _final_state(job.job_id)
        rows.append((t1 - t0, t2 - t0, time.perf_counter() - t0, state))
    for name, k in (("sbatch call", 0), ("result available", 1), ("sacct final state", 2)):
        print(f"single job, {name:<20}        {statistics.median(r[k] for r in rows):6.2f} s (median of {repeats})")
    t0 = time.perf_counter()
    jobs = executor.map_array(_trivial, list(range(4)))
    assert [j.result() for j in jobs] == [1, 2, 3, 4]
    print(f"array of 4, all results                     {time.perf_counter() - t0:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure (best or median of these)")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("no sbatch on PATH: start the local cluster first (make slurm-up)")
    with tempfile.TemporaryDirectory(prefix="rna_hpc_bench_", dir=".") as tmp:
        out = Path(tmp).resolve()
        preflight_latency(out, args.repeats)
        submitit_latency(out, args.repeats)


if __name__ == "__main__":
    main()
