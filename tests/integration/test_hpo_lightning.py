"""OptunaPruningCallback in a real Lightning fit (a subprocess): reports each epoch, stops the fit when pruned;
under DDP only rank 0 writes to the storage and every rank stops at the same epoch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hpo_app.harness import HERE, env
from optuna.trial import TrialState

from rna_hpc.hpo.storage import make_storage

PRUNE_AT_1 = {"_target_": "optuna.pruners.ThresholdPruner", "upper": 0.0, "n_warmup_steps": 1}


def _fit(tmp_path: Path, devices: int) -> tuple[optuna.trial.FrozenTrial, str, list[str]]:
    spec = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="fit", storage=make_storage(spec), direction="minimize")
    study.set_user_attr("pruner", PRUNE_AT_1)  # the loss is > 0: pruned at the first step after warm-up
    number = study.ask().number
    result = subprocess.run(
        [sys.executable, str(HERE / "lightning_trial.py"), spec, "fit", str(number), str(devices)],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    writers = [
        json.loads(line)["worker_id"] for line in Path(spec).read_text().splitlines() if '"intermediate_value"' in line
    ]
    return study.trials[number], result.stdout, writers


def _assert_pruned_at_step_1(trial: optuna.trial.FrozenTrial) -> None:
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [0, 1]
    assert trial.value == pytest.approx(trial.intermediate_values[1])


def test_callback_prunes_a_single_process_fit(tmp_path: Path) -> None:
    trial, out, _ = _fit(tmp_path, devices=1)
    _assert_pruned_at_step_1(trial)
    assert re.search(r"rank 0 stopped epoch 2 pruned True", out)  # max_epochs is 6


@pytest.mark.slow
def test_callback_under_ddp_rank0_reports_all_ranks_stop(tmp_path: Path) -> None:
    trial, out, writers = _fit(tmp_path, devices=2)
    _assert_pruned_at_step_1(trial)
    assert len(set(writers)) == 1  # one process (rank 0) wrote the intermediate values
    stops = re.findall(r"rank (\d) stopped epoch (\d+) pruned (True|False)", out)
    assert sorted(stops) == [("0", "2", "True"), ("1", "2", "True")]
