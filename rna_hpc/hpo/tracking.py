"""MLflow tracking of a search (``hydra.sweeper.mlflow.enabled=true``): every finished trial becomes one MLflow run.

One experiment per search (default: the study name), in a file store under the results dir unless
``hydra.sweeper.mlflow.tracking_uri`` names another store. The sweeper records a trial once it is finished (told
by the sweeper, or PRUNED by its job), and when a stage starts, every finished trial of its study that has no run
yet (a resumed search: trials that ended while no sweeper ran, orphans it gave up, a search tracked only now),
from what the study holds:

- params: the trial's parameters (``+``/``~`` prefixes dropped: MLflow keys do not allow them);
- metrics: ``intermediate_value`` at each reported step, and the final ``value`` (several objectives:
  ``value_0``, ``value_1``, ...);
- tags: ``study``, ``stage``, ``stage_name``, ``trial_number``, ``state``, ``run_dir``, ``fail_reason``;
- status: COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rna_hpc import compat
from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.loggers.mlflow_store import allow_file_store, ensure_experiment

log = logging.getLogger(__name__)

RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def default_tracking_uri(results_dir: Path) -> str:
    return (results_dir / "mlruns").resolve().as_uri()


def _ms(when: Any) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


class TrialTracker:
    """Writes finished trials of the search's studies to one MLflow experiment."""

    def __init__(self, tracking_uri: str, experiment_name: str) -> None:
        from mlflow.tracking import MlflowClient

        allow_file_store(tracking_uri)
        self.tracking_uri = tracking_uri
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = ensure_experiment(self.client, experiment_name)
        except Exception as e:  # MLflow raises its own exception types for unreachable or invalid stores
            raise SweepConfigError(f"hydra.sweeper.mlflow: cannot open experiment in '{tracking_uri}': {e}") from e
        log.info("tracking trials in MLflow experiment '%s' (%s)", experiment_name, tracking_uri)

    def record(self, study: Any, number: int) -> str:
        """One MLflow run for trial ``number`` of ``study`` (finished); its run id."""
        from mlflow.entities import Metric, Param, RunTag

        trial = compat.stored_trial(study, number)
        start, end = _ms(trial.datetime_start), _ms(trial.datetime_complete)
        attrs = study.user_attrs
        tags = {
            "study": study.study_name,
            "stage": attrs.get("stage", "refit"),
            "stage_name": attrs.get("stage_name", "refit"),
            "trial_number": trial.number,
            "state": trial.state.name,
            "run_dir": trial.user_attrs.get("run_dir", ""),
            "fail_reason": trial.user_attrs.get("fail_reason", ""),
        }
        if "seed" in trial.user_attrs:
            tags["seed"] = trial.user_attrs["seed"]
        run = self.client.create_run(
            self.experiment_id, start_time=start, run_name=f"{study.study_name}#{trial.number}", tags={}
        )
        stamp = end or start or 0
        metrics = [Metric("intermediate_value", float(v), stamp, int(s)) for s, v in trial.intermediate_values.items()]
        if trial.values is not None:
            names = ["value"] if len(trial.values) == 1 else [f"value_{i}" for i in range(len(trial.values))]
            metrics += [Metric(n, float(v), stamp, 0) for n, v in zip(names, trial.values)]
        params = [Param(str(k).lstrip("+~"), str(v)) for k, v in trial.params.items()]
        self.client.log_batch(
            run.info.run_id, metrics=metrics, params=params, tags=[RunTag(k, str(v)) for k, v in tags.items()]
        )
        self.client.set_terminated(run.info.run_id, status=RUN_STATUS.get(trial.state.name, "FAILED"), end_time=end)
        return run.info.run_id

    def recorded(self, study: Any) -> set[int]:
        """Numbers of the trials of ``study`` that have a run in the experiment."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.study = '{study.study_name}'", max_results=50000
        )
        return {int(r.data.tags["trial_number"]) for r in runs if "trial_number" in r.data.tags}

    def record_missing(self, study: Any) -> list[int]:
        """Record every finished trial of ``study`` without a run (idempotent); their numbers."""
        done = self.recorded(study)
        missing = [t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in done]
        for number in missing:
            self.record(study, number)
        if missing:
            log.info("MLflow: recorded %d earlier trial(s) of %s", len(missing), study.study_name)
        return missing


def make_tracker(settings: Any, results_dir: Path, study_name: str) -> TrialTracker | None:
    """The tracker ``hydra.sweeper.mlflow`` asks for, or None when tracking is off."""
    if not settings or not settings.get("enabled"):
        return None
    uri = settings.get("tracking_uri") or default_tracking_uri(results_dir)
    return TrialTracker(str(uri), str(settings.get("experiment_name") or study_name))
