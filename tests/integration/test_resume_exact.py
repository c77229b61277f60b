"""A run killed mid-epoch and resumed ends exactly as one that never stopped; a changed shape is refused on resume.

Real ``python -m rna_hpc.train`` processes on a sliver of the real data: the interrupted one is SIGKILLed right after
a periodic checkpoint, as a preempted job is, and started again with the same command line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rna_hpc.checkpoint.torch_load import safe_torch_load

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EVERY = 3  # checkpoint.every_n_steps
TINY = (
    "data=rna3d",
    "data.fraction=0.03",  # 16 targets: 8 batches of 2 per epoch
    "data.max_length=40",
    "data.val_max_length=64",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "model.generator.n_steps=4",
    "trainer.max_epochs=2",
    "trainer.limit_val_batches=2",
    "trainer.deterministic=true",
    "trainer.log_every_n_steps=1",
    f"checkpoint.every_n_steps={EVERY}",
)


def _command(data_dir: Path, run: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "rna_hpc.train", f"paths.data_dir={data_dir}", *TINY, f"hydra.run.dir=runs/{run}"] + [
        *overrides
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}


def _train(cwd: Path, data_dir: Path, run: str, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(data_dir, run, *overrides),
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )


def _kill_after_checkpoint(cwd: Path, data_dir: Path, run: str, step: int, timeout: float = 400) -> None:
    """Start the run and SIGKILL it as soon as ``step-<step>.ckpt`` is complete (its sidecar exists)."""
    sidecar = cwd / "runs" / run / "ckpt" / f"step-{step}.ckpt.sha256"
    child = subprocess.Popen(
        _command(data_dir, run), cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while not sidecar.exists():
            assert child.poll() is None, f"the run ended (rc {child.returncode}) before {sidecar.name}"
            assert time.monotonic() < deadline, f"no {sidecar.name} after {timeout}s"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)


def _result(cwd: Path, run: str) -> dict:
    """The consolidated result of a finished run: optimizer steps, validation loss, parameters digest."""
    shared = cwd / "outputs" / "shared" / "default" / run / "0"
    manifest = json.loads((shared / "manifest.json").read_text())
    log = (cwd / "runs" / run / "train.log").read_text()
    return {
        "steps": safe_torch_load(shared / "ckpt" / "last.ckpt")["global_step"],
        "val_loss": manifest["metrics"]["val/loss"],
        "digest": re.findall(r"parameters sha256 ([0-9a-f]{64})", log)[-1],
        "log": log,
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, rna3d_dir: Path) -> Path:
    """An uninterrupted run ``a`` and a run ``b`` killed after its step-6 checkpoint, then started again."""
    cwd = tmp_path_factory.mktemp("resume_exact")
    done = _train(cwd, rna3d_dir, "a")
    assert done.returncode == 0, done.stdout[-3000:]
    _kill_after_checkpoint(cwd, rna3d_dir, "b", step=2 * EVERY)
    resumed = _train(cwd, rna3d_dir, "b")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    return cwd


def test_killed_run_resumes_to_the_same_steps_and_validation_loss(runs: Path) -> None:
    a, b = _result(runs, "a"), _result(runs, "b")
    (resumed_from,) = re.findall(r"resuming from \S+ \(step (\d+)\)", b["log"])
    logged = re.findall(r"epoch \d+ step (\d+)/", b["log"].split("resuming from")[0])  # one line per step
    steps_before_kill = max([int(resumed_from), *map(int, logged)])  # the checkpoint's step was done too
    lost = steps_before_kill - int(resumed_from)
    relative = abs(a["val_loss"] - b["val_loss"]) / abs(a["val_loss"])
    print(
        f"killed at step {steps_before_kill}, resumed from step {resumed_from}: {lost} optimizer step(s) lost "
        f"(checkpoint interval {EVERY}); steps {b['steps']} vs {a['steps']} uninterrupted; "
        f"val/loss {b['val_loss']:.8f} vs {a['val_loss']:.8f} (relative difference {relative:.2e}); "
        f"parameters {'identical' if a['digest'] == b['digest'] else 'differ'}"
    )
    assert int(resumed_from) % 8 != 0, "the interruption should fall mid-epoch (8 batches per epoch)"
    assert 0 <= lost <= EVERY
    assert b["steps"] == a["steps"] == 16
    assert relative <= 1e-5


def test_resume_refuses_a_changed_shape_unless_told_to_ignore_it(runs: Path, rna3d_dir: Path) -> None:
    changed = _train(runs, rna3d_dir, "a", "model.trunk.c_s=24", "model.merger.single_in=28")
    assert changed.returncode == 2, changed.stdout[-3000:]
    for line in (
        "model.trunk.c_s: checkpoint 32, config 24",
        "model.merger.single_in: checkpoint 36, config 28",
        "resume: the checkpoint has another shape; start a new run or set resume=ignore_config_change",
    ):
        assert line in changed.stdout
    assert "Traceback" not in changed.stdout
    sampling = _train(runs, rna3d_dir, "a", "model.generator.n_steps=5")  # not a weight shape, but a model field
    assert sampling.returncode == 2 and "model.generator.n_steps: checkpoint 4, config 5" in sampling.stdout
    accepted = _train(runs, rna3d_dir, "a", "model.generator.n_steps=5", "resume=ignore_config_change")
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    assert "resuming despite config changes (resume=ignore_config_change): model.generator.n_steps" in accepted.stdout
    print("changed shape refused naming model.trunk.c_s and model.merger.single_in; n_steps change accepted on request")
