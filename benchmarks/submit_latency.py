"""Seconds from a sweep command's start until every array task is in ``squeue``: rna_hpc vs hydra-submitit-launcher.

Side by side for N jobs (default 32, 128 and 1000), on the cluster this host submits to (the local one from
``slurm/start.sh``), into its ``parked`` partition (State=DOWN: the jobs queue and never run; each is cancelled
after it is counted):

- rna_hpc: ``python -m rna_hpc.train -m launcher=slurm seed=range(0,N)`` (rna_hpc's training config, every job
  composed and validated before anything reaches sbatch; detached, so the command returns once queued);
- stock: hydra-submitit-launcher's ``submitit_slurm`` on a task module that imports torch and Lightning at top level
  (the plugin waits for results: the time is taken when squeue shows every task, then the command is stopped).

Run from the repository root: ``.venv/bin/python benchmarks/submit_latency.py [--jobs 32 128 1000]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO

STOCK_APP = """
import hydra
import pytorch_lightning  # noqa: F401  (what a training module imports at top level)
import torch  # noqa: F401


@hydra.main(version_base="1.3", config_path=None)
def main(cfg):
    return 0.0


if __name__ == "__main__":
    main()
"""


def queued(name: str) -> int:
    out = subprocess.run(["squeue", "-r", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=60)
    return len(out.stdout.split())


def time_to_queue(cmd: list[str], cwd: Path, name: str, n: int, timeout: float = 900) -> float:
    """Seconds until ``n`` tasks named ``name`` are queued; the command is stopped then (or ends by itself)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = cwd / f"{name}.log"  # a file, not a pipe: a thousand lines of output must never block the command
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while queued(name) < n:
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"{name}: not all {n} tasks queued after {timeout} s")
            if proc.poll() is not None and queued(name) < n:
                raise SystemExit(f"{name}: the command ended (rc {proc.returncode}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return time.perf_counter() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        subprocess.run(["scancel", "-n", name], timeout=120, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[32, 128, 1000])
    parser.add_argument("--partition", default="parked", help="a partition where jobs queue and never start")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rna-hpc-submit-"))
    (root / "stock_app.py").write_text(STOCK_APP)
    print(f"{'jobs':>6} {'rna_hpc s':>10} {'stock s':>10} {'ratio':>7}")
    for n in args.jobs:
        tag = f"{os.getpid()}-{n}"
        ours = [sys.executable, "-m", "rna_hpc.train", "-m", "launcher=slurm", f"seed=range(0,{n})",
                f"hydra.launcher.partition={args.partition}", f"hydra.launcher.name=ours-{tag}",
                "hydra.launcher.detach=true", f"paths.shared_dir={root / 'shared'}",
                f"hydra.sweep.dir={root / f'ours{n}'}"]  # fmt: skip
        stock = [sys.executable, str(root / "stock_app.py"), "-m", "hydra/launcher=submitit_slurm",
                 f"+x=range(0,{n})", f"hydra.launcher.partition={args.partition}",
                 f"hydra.launcher.name=stock-{tag}", f"hydra.sweep.dir={root / f'stock{n}'}"]  # fmt: skip
        t_ours = time_to_queue(ours, root, f"ours-{tag}", n)
        t_stock = time_to_queue(stock, root, f"stock-{tag}", n)
        print(f"{n:>6} {t_ours:>10.1f} {t_stock:>10.1f} {t_ours / t_stock:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
