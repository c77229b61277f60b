"""Submission and DDP figures on the cluster this host submits to (the local one from ``slurm/start.sh``).

1. Time from the multirun command's start until a 32-job sweep is queued (detached submission), and whether the
   submit side imported torch or Lightning.
2. DDP throughput on the real structures: samples/s of a 2-task job vs a 1-task job (ratio), from the jobs' progress
   lines.

Run from the repository root: ``.venv/bin/python benchmarks/slurm_sweep.py [--data ../shared/data/rna3d]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, default_data_dir

PROBE = (
    "import sys, atexit\n"
    "heavy = lambda: [m for m in ('torch', 'pytorch_lightning') if m in sys.modules]\n"
    "atexit.register(lambda: print('SUBMIT-SIDE-HEAVY-IMPORTS=' + ','.join(heavy())))\n"
    "sys.argv = ['train'] + sys.argv[1:]\n"
    "from rna_hpc.train import main\n"
    "main()\n"
)


def run(args: list[str], cwd: Path, timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout + proc.stderr


def queue_32(work: Path) -> None:
    seconds, out = run(["-m", "launcher=slurm", "hydra.launcher.detach=true", "seed=range(0,32)"], work, 600)
    ids = sorted(set(re.findall(r"submitted as (\d+)_\d+", out)))
    queued = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i"], capture_output=True, text=True)
    n_queued = len(queued.stdout.split())
    subprocess.run(["scancel", *ids], check=False)
    heavy = re.search(r"SUBMIT-SIDE-HEAVY-IMPORTS=(.*)", out)
    print(f"32-job sweep queued in {seconds:.1f} s (from the command's start; {n_queued} array tasks seen in squeue)")
    print(f"torch/Lightning imported on the submit side: {(heavy.group(1) or 'no') if heavy else 'unknown'}")


def samples_per_second(work: Path) -> float:
    logs = sorted(work.glob("outputs/shared/submitit/**/*_0_log.err")) + sorted(work.glob("outputs/scratch/**/*.log"))
    rates = [float(x) for p in logs for x in re.findall(r"([\d.]+) samples/s", p.read_text(errors="replace"))]
    if not rates:
        raise SystemExit(f"no progress lines found under {work}")
    return rates[-1]


def ddp_ratio(data: Path) -> None:
    common = [
        "-m", "launcher=slurm", "data=rna3d", f"paths.data_dir={data}", "model=tiny", "data.max_length=64",
        "trainer.max_epochs=1", "trainer.log_every_n_steps=5", "trainer.limit_val_batches=1", "data.fraction=0.3",
        "hydra.launcher.timeout_min=20",
    ]  # fmt: skip
    rates = {}
    for devices in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            extra = ["trainer=ddp", f"trainer.devices={devices}"] if devices > 1 else []
            seconds, _ = run(common + extra, Path(tmp), 1200)
            rates[devices] = samples_per_second(Path(tmp))
            print(f"{devices} task(s): {rates[devices]:.1f} samples/s (job wall {seconds:.0f} s)")
    print(f"DDP 2 tasks vs 1 task: {rates[2] / rates[1]:.2f}x samples/s (2 cores on this host)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        queue_32(Path(tmp))
    ddp_ratio(args.data.resolve())


if __name__ == "__main__":
    main()
