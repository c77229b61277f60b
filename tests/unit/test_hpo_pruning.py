"""report_and_should_prune against a real journal study: reports, the stage's pruner, PRUNED with the last value."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from rna_hpc.errors import ConfigError
from rna_hpc.hpo.pruning import report_and_should_prune
from rna_hpc.hpo.storage import make_storage
from rna_hpc.hpo.trial_job import is_trial_job

THRESHOLD = {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5, "n_warmup_steps": 1}


def _study(tmp_path: Path, pruner: dict | None) -> tuple[str, optuna.Study]:
    spec = str(tmp_path / "j.log")
    study = optuna.create_study(study_name="s", storage=make_storage(spec), direction="maximize")
    if pruner is not None:
        study.set_user_attr("pruner", pruner)
    return spec, study


def test_reports_until_the_stage_pruner_prunes(tmp_path: Path) -> None:
    spec, study = _study(tmp_path, THRESHOLD)
    trial = study.ask()
    cfg = {"study_name": "s", "storage": spec, "number": trial.number, "stage": 0}
    assert is_trial_job(cfg)
    assert report_and_should_prune(cfg, 0, 0.1) is False  # below the threshold, but still in warm-up
    assert report_and_should_prune(cfg, 1, 0.9) is False
    assert report_and_should_prune(cfg, 2, 0.2) is True
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.PRUNED
    assert frozen.value == pytest.approx(0.2)  # the last reported value
    assert frozen.intermediate_values == {0: 0.1, 1: 0.9, 2: 0.2}
    # a requeued job reporting again learns that it must stop, and changes nothing
    assert report_and_should_prune(cfg, 3, 0.99) is True
    assert study.trials[trial.number].intermediate_values == {0: 0.1, 1: 0.9, 2: 0.2}


def test_the_last_report_is_never_pruned(tmp_path: Path) -> None:
    spec, study = _study(tmp_path, THRESHOLD)
    trial = study.ask()
    cfg = {"study_name": "s", "storage": spec, "number": trial.number, "stage": 0}
    assert report_and_should_prune(cfg, 0, 0.9) is False
    assert report_and_should_prune(cfg, 1, 0.2, last=True) is False  # below the threshold, but the run is done
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.RUNNING and frozen.intermediate_values == {0: 0.9, 1: 0.2}


def test_without_a_pruner_nothing_is_pruned(tmp_path: Path) -> None:
    spec, study = _study(tmp_path, None)
    trial = study.ask()
    cfg = {"study_name": "s", "storage": spec, "number": trial.number}
    assert not any(report_and_should_prune(cfg, step, -1e9) for step in range(5))
    assert study.trials[0].state == TrialState.RUNNING and len(study.trials[0].intermediate_values) == 5


def test_a_trial_finished_elsewhere_stops_the_job(tmp_path: Path) -> None:
    spec, study = _study(tmp_path, THRESHOLD)
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    assert report_and_should_prune({"study_name": "s", "storage": spec, "number": trial.number}, 0, 1.0) is True


def test_incomplete_trial_config_names_the_keys(tmp_path: Path) -> None:
    assert not is_trial_job({"study_name": None, "storage": None, "number": None})
    with pytest.raises(ConfigError, match="trial.study_name.*\n.*trial.storage"):
        report_and_should_prune({"number": 3}, 0, 1.0)
    spec, study = _study(tmp_path, None)
    with pytest.raises(ConfigError, match="no study 'other'"):
        report_and_should_prune({"study_name": "other", "storage": spec, "number": 0}, 0, 1.0)
    with pytest.raises(ConfigError, match="has no trial 7"):
        report_and_should_prune({"study_name": "s", "storage": spec, "number": 7}, 0, 1.0)


def test_a_multi_objective_trial_reports_nothing_and_is_never_pruned(tmp_path: Path) -> None:
    spec = str(tmp_path / "j.log")
    study = optuna.create_study(study_name="mo", storage=make_storage(spec), directions=["maximize", "minimize"])
    study.set_user_attr("pruner", THRESHOLD)
    trial = study.ask()
    cfg = {"study_name": "mo", "storage": spec, "number": trial.number, "stage": 0}
    assert [report_and_should_prune(cfg, step, 0.0) for step in range(3)] == [False] * 3
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.RUNNING and frozen.intermediate_values == {}
