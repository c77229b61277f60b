"""The staged sweeper's own additions, in-process with the basic launcher on the upstream-vocabulary sphere app:
MLflow tracking of every trial (read back with MLflow's client), ``only_stage`` (one stage alone from the studies in
the storage) and ``results_dir`` (the search's files apart from the trial run dirs)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from optuna_app import apps
from test_hpo_optuna_parity import load, results, run_sweep

from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.hpo.tracking import RUN_STATUS
from rna_hpc.loggers.mlflow_store import allow_file_store

PRUNED_SPHERE = [
    "hydra/sweeper/sampler=random",
    "hydra.sweeper.pruner.n_startup_trials=2",
    "hydra.sweeper.stages=[{name: explore, n_trials: 6}, {name: narrow, n_trials: 3, top_k: 2}]",
]


def test_mlflow_records_every_trial_of_the_search(hydra_sweep_runner: Callable, tmp_path: Path) -> None:
    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "sphere",
        apps.sphere_by_epoch,
        *PRUNED_SPHERE,
        "hydra.sweeper.refit.n_seeds=2",
        "hydra.sweeper.refit.seed_key=+seed",
        "hydra.sweeper.mlflow.enabled=true",
    )
    with sweep:
        uri = (out / "mlruns").as_uri()
        allow_file_store(uri)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("sphere")
        runs = {
            r.data.tags["study"] + "#" + r.data.tags["trial_number"]: r
            for r in client.search_runs([experiment.experiment_id])
        }
        studies = [load(out, n) for n in ("sphere-s0", "sphere-s1", "sphere-refit")]
        trials = {f"{s.study_name}#{t.number}": (s, t) for s in studies for t in s.trials}
        assert sorted(runs) == sorted(trials) and len(runs) == 6 + 3 + 2
        states = set()
        for key, (study, t) in trials.items():
            run = runs[key]
            states.add(t.state)
            assert run.info.status == RUN_STATUS[t.state.name]
            assert run.data.tags["state"] == t.state.name and run.data.tags["run_dir"] == t.user_attrs["run_dir"]
            assert run.data.tags["stage"] == str(study.user_attrs.get("stage", "refit"))
            assert run.data.params == {k: str(v) for k, v in t.params.items()}
            assert run.data.metrics["value"] == pytest.approx(t.value)
            history = client.get_metric_history(run.info.run_id, "intermediate_value")
            assert {m.step: m.value for m in history} == pytest.approx(t.intermediate_values)
        assert TrialState.PRUNED in states and TrialState.COMPLETE in states


def test_a_resumed_search_records_the_trials_mlflow_has_not_seen(hydra_sweep_runner: Callable, tmp_path: Path) -> None:
    """Tracking turned on for a search that already ran: each finished trial gets one run, once."""
    keep = tmp_path / "search"  # the storage and results outlive each run's sweep dir (the runner removes it)
    untracked = ["hydra/sweeper/sampler=random", f"hydra.sweeper.results_dir={keep}"]
    sweep, _ = run_sweep(hydra_sweep_runner, tmp_path, "sphere", apps.sphere, *untracked, "hydra.sweeper.n_trials=3")
    with sweep:
        assert not (keep / "mlruns").exists()
    uri = (keep / "mlruns").as_uri()
    for n_trials in (3, 4):  # resumed with nothing left to run, then with one more trial
        tracked = [*untracked, f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.mlflow.enabled=true"]
        sweep, _ = run_sweep(hydra_sweep_runner, tmp_path, "sphere", apps.sphere, *tracked)
        with sweep:
            allow_file_store(uri)
            client = MlflowClient(tracking_uri=uri)
            runs = client.search_runs([client.get_experiment_by_name("sphere").experiment_id])
            assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(n_trials))


def test_only_stage_runs_one_stage_from_the_studies_in_storage(hydra_sweep_runner: Callable, tmp_path: Path) -> None:
    first, out = run_sweep(hydra_sweep_runner, tmp_path, "sphere", apps.sphere_by_epoch, *PRUNED_SPHERE)
    with first:
        s0_before = [(t.number, t.state, t.params) for t in load(out, "sphere-s0").trials]
        assert len(load(out, "sphere-s1").trials) == 3
        more = PRUNED_SPHERE[:-1] + [
            "hydra.sweeper.stages=[{name: explore, n_trials: 10}, {name: narrow, n_trials: 5, top_k: 2}]"
        ]
        again, _ = run_sweep(
            hydra_sweep_runner, tmp_path, "sphere", apps.sphere_by_epoch, *more, "hydra.sweeper.only_stage=narrow"
        )
        with again:
            assert [(t.number, t.state, t.params) for t in load(out, "sphere-s0").trials] == s0_before  # not run
            s1 = load(out, "sphere-s1")
            assert len(s1.trials) == 5 and s1.user_attrs["parent_study"] == "sphere-s0"
            assert results(out / "stage1-narrow")["best_value"] == min(
                t.value for t in s1.trials if t.state == TrialState.COMPLETE
            )


@pytest.mark.parametrize(
    ("only", "message"),
    [
        ("narrow", "hydra.sweeper.only_stage=narrow: stage 'explore' (sphere-s0) has no COMPLETE trial in"),
        ("focus", "hydra.sweeper.only_stage: no stage 'focus' in hydra.sweeper.stages (explore, narrow)"),
    ],
)
def test_only_stage_refuses_what_it_cannot_run(
    only: str, message: str, hydra_sweep_runner: Callable, tmp_path: Path
) -> None:
    sweep, out = run_sweep(
        hydra_sweep_runner, tmp_path, "sphere", apps.sphere, *PRUNED_SPHERE, f"hydra.sweeper.only_stage={only}"
    )
    with pytest.raises(SweepConfigError, match=re.escape(message)):
        with sweep:
            pass
    assert not (out / "0").exists()  # no trial ran


def test_results_dir_holds_the_search_files_apart_from_the_trial_run_dirs(
    hydra_sweep_runner: Callable, tmp_path: Path
) -> None:
    shared = tmp_path / "shared" / "hpo" / "sphere"
    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "sphere",
        apps.sphere,
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.results_dir={shared}",
    )
    with sweep:
        assert not (out / "optuna.journal").exists()
        # optimization_results.yaml also where hydra-optuna-sweeper writes it: the sweep dir
        assert (out / "optimization_results.yaml").read_text() == (shared / "optimization_results.yaml").read_text()
        trials = load(shared, "sphere-s0").trials
        assert [t.user_attrs["run_dir"] for t in trials] == [str(out / str(n)) for n in range(3)]
        assert results(shared)["best_value"] == min(t.value for t in trials)
        assert (shared / "summary.csv").is_file() and (shared / "stage0-search" / "best_params.yaml").is_file()
