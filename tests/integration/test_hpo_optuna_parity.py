"""hydra-optuna-sweeper's vocabulary under the staged sweeper, in-process with the basic launcher: every sampler
and pruner by name, multi-objective searches (narrowing and refit from the Pareto front), an exhausted grid,
``custom_search_space`` and ``optimization_results.yaml``. The apps and configs are in ``optuna_app/``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from optuna_app import apps

from rna_hpc.hpo.errors import SweepConfigError, SweepError
from rna_hpc.hpo.narrowing import select_top
from rna_hpc.hpo.storage import make_storage

APP = Path(__file__).parent / "optuna_app" / "apps.py"
QUIET = ["hydra.job.chdir=false", "hydra.sweeper.plots=false"]

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
    "gp": "GPSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "bruteforce": "BruteForceSampler",
}
PRUNERS = {  # name -> settings that let it act within 8 trials of 6 epochs
    "median": ["n_startup_trials=2"],
    "percentile": ["n_startup_trials=2", "percentile=25.0"],
    "successive_halving": ["min_resource=1", "reduction_factor=2"],
    "hyperband": ["min_resource=1", "max_resource=6", "reduction_factor=2"],
    "wilcoxon": [],
    "threshold": ["upper=20.0"],
    "patient": ["patience=1"],  # worse after epoch 2: pruned at epoch 4
}
PRUNER_CLASSES = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "wilcoxon": "WilcoxonPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "nop": "NopPruner",
}


def run_sweep(
    runner: Callable[..., Any], tmp_path: Path, config: str, task: Callable, *overrides: str
) -> tuple[Any, Path]:
    sweep = runner(
        calling_file=str(APP),
        calling_module=None,
        task_function=task,
        config_path="conf",
        config_name=config,
        overrides=[*QUIET, *overrides],
        temp_dir=tmp_path / "sweep",
    )
    return sweep, tmp_path / "sweep"


def load(sweep_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(str(sweep_dir / "optuna.journal")))


def results(sweep_dir: Path) -> dict:
    return yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_by_name(
    name: str, hydra_sweep_runner: Callable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sweep, out = run_sweep(
        hydra_sweep_runner, tmp_path, "sphere", apps.sphere, f"hydra/sweeper/sampler={name}", "hydra.sweeper.n_trials=5"
    )
    with sweep:
        study = load(out, "sphere-s0")
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5
        for t in study.trials:
            assert t.value == pytest.approx(t.params["x"] ** 2 + t.params["y"] ** 2)
        assert f"(sphere-s0; {SAMPLERS[name]}, pruner MedianPruner)" in caplog.text
        best = min(study.trials, key=lambda t: (t.value, t.number))
        assert results(out) == {"name": "optuna", "best_params": best.params, "best_value": best.value}
        assert results(out / "stage0-search") == results(out)
        assert sweep.returns == best.value


@pytest.mark.parametrize("name", [*sorted(PRUNERS), "nop"])
def test_every_pruner_by_name(
    name: str, hydra_sweep_runner: Callable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = [f"hydra.sweeper.pruner.{s}" for s in PRUNERS.get(name, [])]
    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "sphere",
        apps.sphere_by_epoch,
        "hydra/sweeper/sampler=random",
        f"hydra/sweeper/pruner={name}",
        "hydra.sweeper.n_trials=8",
        *settings,
    )
    with sweep:
        trials = load(out, "sphere-s0").trials
        pruned = [t for t in trials if t.state == TrialState.PRUNED]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(pruned) + len(complete) == 8
        assert f"pruner {PRUNER_CLASSES[name]})" in caplog.text
        if name == "nop":
            assert not pruned and all(len(t.intermediate_values) == 6 for t in complete)
            return
        assert pruned, f"{name} pruned nothing"
        for t in pruned:
            last = max(t.intermediate_values)
            assert last < 5 and t.value == pytest.approx(t.intermediate_values[last])
        if name == "patient":  # every trial stops once it got no better for patience + 1 epochs
            assert {max(t.intermediate_values) for t in pruned} == {4}


def test_multi_objective_narrows_and_refits_from_the_pareto_front(
    hydra_sweep_runner: Callable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stages = "hydra.sweeper.stages=[{name: explore, n_trials: 10}, {name: narrow, n_trials: 6, top_k: 3, margin: 0.1}]"
    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "multi-objective",
        apps.binh_and_korn,
        "hydra.sweeper.sampler.population_size=4",
        stages,
        "hydra.sweeper.refit.n_seeds=1",
        "hydra.sweeper.refit.pareto_max=2",
        "hydra.sweeper.refit.seed_key=+seed",
    )
    with sweep:
        s0, s1, refit = (load(out, f"multi-objective-{s}") for s in ("s0", "s1", "refit"))
        directions = ["minimize", "minimize"]
        front0 = {t.number for t in s0.best_trials}  # optuna's own Pareto front
        top = s1.user_attrs["parent_top"]
        assert top == [t.number for t in select_top(s0.trials, 3, directions)]
        assert set(top[: len(front0)]) <= front0 and set(top) & front0
        for t in s1.trials:
            assert t.state == TrialState.COMPLETE and len(t.values) == 2
        solutions = results(out)["solutions"]
        assert sorted(map(str, solutions)) == sorted(
            str({"params": t.params, "values": t.values}) for t in s1.best_trials
        )
        parents = refit.user_attrs["parent_trials"]
        assert len(parents) == min(2, len(s1.best_trials)) and set(parents) <= {t.number for t in s1.best_trials}
        assert sorted(t.user_attrs["parent_trial"] for t in refit.trials) == sorted(parents)
        assert [s["parent_trial"] for s in refit.user_attrs["refit_solutions"]] == sorted(parents)
        assert "2 objectives, so no pruning (optuna.pruners.MedianPruner is not used)" in caplog.text
        assert isinstance(sweep.returns, list) and len(sweep.returns) == 2


def test_wrong_number_of_objectives_is_a_failed_trial(hydra_sweep_runner: Callable, tmp_path: Path) -> None:

    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "multi-objective",
        apps.binh_and_korn,
        "hydra.sweeper.direction=[minimize,minimize,maximize]",
        "hydra.sweeper.n_trials=1",
    )
    with pytest.raises(SweepError, match="1 failed trial"):
        with sweep:
            pass
    trial = load(out, "multi-objective-s0").trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith("objective: 3 directions, but the task returned 2 value(s)")


@pytest.mark.parametrize("sampler", ["grid", "bruteforce"])
def test_an_exhausted_space_ends_its_stage_cleanly(sampler: str, hydra_sweep_runner: Callable, tmp_path: Path) -> None:
    """9 points, n_trials 20: each point once, then the stage ends (the grid caps the stage, brute force stops it)."""
    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "sphere",
        apps.sphere,
        f"hydra/sweeper/sampler={sampler}",
        "hydra.sweeper.params.x='choice(0, 1, 2)'",
        "hydra.sweeper.params.y='choice(-5, 0, 5)'",
        "hydra.sweeper.stages=[{name: all, n_trials: 20}, {name: again, n_trials: 20, top_k: 2}]",
    )
    with sweep:
        s0, s1 = load(out, "sphere-s0"), load(out, "sphere-s1")
        points0 = [(t.params["x"], t.params["y"]) for t in s0.trials]
        assert sorted(points0) == sorted((x, y) for x in (0, 1, 2) for y in (-5, 0, 5))  # each point once
        space1 = s1.user_attrs["space_text"]
        n1 = (space1["x"].count(",") + 1) * (space1["y"].count(",") + 1)
        points1 = [(t.params["x"], t.params["y"]) for t in s1.trials]
        assert len(points1) == len(set(points1)) == n1 < 9
        assert all(t.state == TrialState.COMPLETE for t in s0.trials + s1.trials)
        assert results(out)["best_value"] == 0.0 and results(out)["best_params"] == {"x": 0, "y": 0}


def test_custom_search_space_adds_conditional_params(hydra_sweep_runner: Callable, tmp_path: Path) -> None:
    sweep, out = run_sweep(
        hydra_sweep_runner, tmp_path, "custom-search-space", apps.sphere_with_z, "hydra.sweeper.n_trials=6"
    )
    with sweep:
        trials = load(out, "custom-search-space-s0").trials
        assert len(trials) == 6
        for t in trials:
            x, z, w = t.params["x"], t.params["z"], t.params["+w"]
            assert x - 0.5 <= z <= x + 0.5 and 0.0 <= w <= 1.0
            assert t.value == pytest.approx(x**2 + t.params["y"] ** 2 + z**2 + w)  # the job saw z and w


def test_custom_search_space_refuses_a_param_the_overrides_fix(hydra_sweep_runner: Callable, tmp_path: Path) -> None:
    sweep, out = run_sweep(
        hydra_sweep_runner, tmp_path, "custom-search-space", apps.sphere_with_z, "hydra.sweeper.n_trials=2", "z=0.25"
    )
    with pytest.raises(SweepConfigError, match=r"custom_search_space: optuna_app.apps.configure suggests z, which"):
        with sweep:
            pass
    assert not (out / "0").exists()  # refused before the first job
    assert [t.state for t in load(out, "custom-search-space-s0").trials] == [TrialState.FAIL]


@pytest.mark.parametrize("sampler", ["nsgaiii", "motpe", "tpe", "random", "gp", "qmc"])
def test_every_multi_objective_sampler_finds_a_front(
    sampler: str, hydra_sweep_runner: Callable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sweep, out = run_sweep(
        hydra_sweep_runner,
        tmp_path,
        "multi-objective",
        apps.binh_and_korn,
        f"hydra/sweeper/sampler={sampler}",
        "hydra.sweeper.sampler.seed=123",
        "hydra.sweeper.n_trials=6",
    )
    with sweep:
        study = load(out, "multi-objective-s0")
        assert len(study.trials) == 6 and all(len(t.values) == 2 for t in study.trials)
        assert f"(multi-objective-s0; {SAMPLERS['tpe' if sampler == 'motpe' else sampler]}, pruner none)" in caplog.text
        solutions = results(out)["solutions"]
        assert solutions and sorted(map(str, solutions)) == sorted(
            str({"params": t.params, "values": t.values}) for t in study.best_trials
        )
