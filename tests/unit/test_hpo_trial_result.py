"""A trial job records its result in the study; a sweeper that restarts tells it instead of running it again."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from rna_hpc.hpo.resume import ORPHAN_REASON, fail_orphans
from rna_hpc.hpo.storage import make_storage
from rna_hpc.hpo.trial_job import RESULT_ATTR, RecordsTrialResult, record_result


def _study(tmp_path: Path, directions: list[str]) -> tuple[str, optuna.Study]:
    spec = str(tmp_path / "j.log")
    return spec, optuna.create_study(study_name="s", storage=make_storage(spec), directions=directions)


def test_the_wrapped_task_records_what_it_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    spec, study = _study(tmp_path, ["minimize"])
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    cfg = OmegaConf.create({"x": 0.5, "trial": {"study_name": "s", "storage": spec, "number": trial.number}})
    task = RecordsTrialResult(lambda c: c.x * 2)
    assert task(cfg) == 1.0
    assert study.trials[0].user_attrs[RESULT_ATTR] == 1.0 and study.trials[0].state == TrialState.RUNNING
    assert task(OmegaConf.create({"x": 0.25})) == 0.5  # not a trial job: nothing to record


def test_a_finished_trial_or_a_non_number_is_not_recorded(tmp_path: Path) -> None:
    spec, study = _study(tmp_path, ["minimize"])
    trial = study.ask()
    cfg = {"study_name": "s", "storage": spec, "number": trial.number}
    assert record_result(cfg, "not a number") is False
    study.tell(trial.number, 3.0)
    assert record_result(cfg, 1.0) is False and RESULT_ATTR not in study.trials[0].user_attrs


def test_restart_tells_recorded_results_and_reissues_the_rest(tmp_path: Path) -> None:
    spec, study = _study(tmp_path, ["minimize", "maximize"])
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    done, lost = study.ask(space), study.ask(space)  # left RUNNING by a sweeper that died
    record_result({"study_name": "s", "storage": spec, "number": done.number}, (0.25, 4.0))
    assert fail_orphans(study) == [lost.number]
    trials = study.trials
    assert trials[done.number].state == TrialState.COMPLETE and trials[done.number].values == [0.25, 4.0]
    assert trials[done.number].user_attrs["recovered"] is True
    assert trials[lost.number].state == TrialState.FAIL
    assert trials[lost.number].user_attrs["fail_reason"] == ORPHAN_REASON
    (retry,) = study.get_trials(states=(TrialState.WAITING,))  # only the lost trial runs again
    assert retry.user_attrs == {"retry_of": lost.number}
