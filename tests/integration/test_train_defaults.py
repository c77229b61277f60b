"""What every training run gets without asking: validation at a mid-epoch step budget, the learning rate logged."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from pytorch_lightning.callbacks import LearningRateMonitor

from rna_hpc.job.trainer import build_trainer
from rna_hpc.launch.env import JobContext
from rna_hpc.launch.identity import RunIdentity

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rna_hpc.train", "debug=fast", "trainer.detect_anomaly=false"]
    cmd += [f"paths.scratch_dir={tmp_path / 'scratch'}", f"paths.shared_dir={tmp_path / 'shared'}"]
    cmd += [f"hydra.run.dir={tmp_path / 'run'}", *overrides]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_a_step_budget_ending_in_mid_epoch_logs_the_objective_and_the_learning_rate(tmp_path: Path) -> None:
    # 24 synthetic targets: 20 for training in batches of 4, so 5 steps per epoch; the budget stops after 2
    proc = _train(
        tmp_path,
        "data.synthetic.n_targets=24",
        "trainer.limit_train_batches=null",
        "trainer.max_epochs=3",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # a missing objective fails the run ("was never logged")
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = sorted({int(r["step"]) for r in rows if r.get("train/loss")})
    assert steps and max(steps) < 5, steps  # the budget ended inside the first epoch
    assert [float(r["val/tm"]) for r in rows if r.get("val/tm")], "no validation at the step budget"
    lrs = [float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")]
    assert len(lrs) == 2 and all(lr > 0 for lr in lrs) and lrs[0] != lrs[1], lrs  # warmup: the rate moves


@pytest.mark.parametrize(("enabled", "monitored"), [("true", True), ("false", False)])
def test_the_learning_rate_monitor_is_a_default_callback_whenever_a_logger_is_on(
    tmp_path: Path, enabled: str, monitored: bool
) -> None:
    """LearningRateMonitor raises at fit start without a logger: it is only added when one is on."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        over = [f"logger.csv.enabled={enabled}", f"logger.csv.save_dir={tmp_path}", "consolidate.enabled=false"]
        cfg = compose("train", overrides=over)
    identity = RunIdentity("exp", "sweep", 0, tmp_path / "run", tmp_path / "shared")
    trainer = build_trainer(cfg, identity, JobContext())
    assert bool(trainer.loggers) is monitored
    assert any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks) is monitored
