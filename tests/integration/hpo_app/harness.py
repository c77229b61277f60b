"""Running the tiny app as a real multirun subprocess, and reading its studies back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

from rna_hpc.hpo.storage import make_storage

APP = Path(__file__).with_name("app.py")
HERE = Path(__file__).parent


def command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(APP), "-m", "+search=smoke", f"hydra.sweep.dir={sweep_dir}", *overrides]


def env() -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}


def run_app(sweep_dir: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a sweep to its end (cwd: the sweep dir's parent, so nothing lands in the repository)."""
    return subprocess.run(
        command(sweep_dir, *overrides),
        cwd=sweep_dir.parent,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_app(sweep_dir: Path, *overrides: str, log: Path) -> subprocess.Popen:
    """Start a sweep in its own process group (so a test can kill it and all it started)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            command(sweep_dir, *overrides),
            cwd=sweep_dir.parent,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def load(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(str(sweep_dir / "optuna.journal")))


def study_names(sweep_dir: Path) -> list[str]:
    storage = make_storage(str(sweep_dir / "optuna.journal"))
    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
