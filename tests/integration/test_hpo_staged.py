"""A staged search through the basic launcher, end to end: stage studies with provenance, narrowing, enqueued best
trials, pruning, failures, refit, outputs; then a re-run that refuses an incompatible plan, and the budget guard."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest
import yaml
from hpo_app.harness import load, run_app, study_names
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from rna_hpc.hpo.space import space_from_json

FAILING = ["fail_trials=[1]", "nan_trials=[2]"]  # stage 0: one raises, one returns NaN


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("staged") / "sweep"
    result = run_app(sweep_dir, *FAILING)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sweep_dir


def test_one_study_per_stage_plus_refit(sweep: Path) -> None:
    assert study_names(sweep) == ["smoke-refit", "smoke-s0", "smoke-s1"]
    s0, s1 = load(sweep, "smoke-s0"), load(sweep, "smoke-s1")
    assert len(s0.trials) == 6 and len(s1.trials) == 4
    assert s0.user_attrs["stage"] == 0 and s0.user_attrs["parent_study"] is None
    assert s1.user_attrs["stage"] == 1 and s1.user_attrs["stage_name"] == "narrow"
    assert s1.user_attrs["parent_study"] == "smoke-s0"
    assert s0.user_attrs["fingerprint"] == s1.user_attrs["fingerprint"]


def test_stage1_space_is_narrowed_around_the_stage0_top_k(sweep: Path) -> None:
    s0, s1 = load(sweep, "smoke-s0"), load(sweep, "smoke-s1")
    complete = sorted((t for t in s0.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    top = complete[:3]
    assert s1.user_attrs["parent_top"] == [t.number for t in top]
    space0, space1 = space_from_json(s0.user_attrs["space"]), space_from_json(s1.user_attrs["space"])
    xs = [t.params["x"] for t in top]
    x1 = space1["x"]
    assert isinstance(x1, FloatDistribution)
    assert x1.low == pytest.approx(max(min(xs) - 0.1 * 2.0, -1.0))  # margin 0.1 of the parent width 2
    assert x1.high == pytest.approx(min(max(xs) + 0.1 * 2.0, 1.0))
    assert space1["y"].log and space0["y"].low <= space1["y"].low <= space1["y"].high <= space0["y"].high
    assert set(space1["opt"].choices) == {t.params["opt"] for t in top}
    for t in s1.trials:
        assert x1.low <= t.params["x"] <= x1.high


def test_stage0_best_trials_run_first_in_stage1(sweep: Path) -> None:
    s0, s1 = load(sweep, "smoke-s0"), load(sweep, "smoke-s1")
    top = s1.user_attrs["parent_top"]
    for trial, parent_number in zip(s1.trials[: len(top)], top):
        assert trial.user_attrs["enqueued_from"] == parent_number
        assert trial.params == s0.trials[parent_number].params


def test_pruned_trials_keep_their_state_and_last_value(sweep: Path) -> None:
    pruned = [t for name in ("smoke-s0", "smoke-s1") for t in load(sweep, name).trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner pruned nothing"
    for t in pruned:
        assert t.value == pytest.approx(t.intermediate_values[max(t.intermediate_values)])
        assert len(t.intermediate_values) < 4  # stopped before its last epoch


def test_failures_are_recorded_with_their_reason(sweep: Path) -> None:
    s0 = load(sweep, "smoke-s0")
    assert s0.trials[1].state == TrialState.FAIL
    assert "RuntimeError: trial 1 fails on purpose" in s0.trials[1].user_attrs["fail_reason"]
    assert s0.trials[2].state == TrialState.FAIL
    assert s0.trials[2].user_attrs["fail_reason"] == "non-finite objective: nan"


def test_refit_runs_the_best_config_under_each_seed(sweep: Path) -> None:
    s1, refit = load(sweep, "smoke-s1"), load(sweep, "smoke-refit")
    best = max((t for t in s1.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert refit.user_attrs["parent_study"] == "smoke-s1" and refit.user_attrs["parent_trial"] == best.number
    assert sorted(t.user_attrs["seed"] for t in refit.trials) == [0, 1]
    for t in refit.trials:
        assert t.state == TrialState.COMPLETE and t.params == best.params
        assert "seed=" + str(t.user_attrs["seed"]) in t.user_attrs["overrides"]
        assert "trainer.max_epochs=5" in t.user_attrs["overrides"]
    assert math.isfinite(refit.user_attrs["refit_mean"]) and refit.user_attrs["refit_n"] == 2


def test_each_trial_is_its_own_job_with_its_identity(sweep: Path) -> None:
    trials = [t for name in study_names(sweep) for t in load(sweep, name).trials]
    nums = [t.user_attrs["job_num"] for t in trials]
    assert sorted(nums) == list(range(len(trials)))
    for t in trials:
        overrides = yaml.safe_load((sweep / str(t.user_attrs["job_num"]) / ".hydra" / "overrides.yaml").read_text())
        assert overrides == t.user_attrs["overrides"]
        assert t.user_attrs["run_dir"] == str(sweep / str(t.user_attrs["job_num"]))
        if "seed" not in t.user_attrs:
            assert f"++trial.number={t.number}" in overrides


def test_outputs_per_stage_and_at_the_end(sweep: Path) -> None:
    for stage in ("stage0-explore", "stage1-narrow"):
        for name in ("summary.csv", "best_params.yaml", "best_overrides.txt", "optimization_history.png"):
            assert (sweep / stage / name).stat().st_size > 0, f"{stage}/{name}"
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 6 + 4 + 2
    assert {r["state"] for r in rows} >= {"COMPLETE", "PRUNED", "FAIL"}
    assert rows[1]["fail_reason"].startswith("RuntimeError")
    best = yaml.safe_load((sweep / "best_params.yaml").read_text())
    s1 = load(sweep, "smoke-s1")
    best_trial = max((t for t in s1.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best["defaults"] == [{"override /opt": best_trial.params["opt"]}]
    assert best["x"] == pytest.approx(best_trial.params["x"]) and best["k"] == best_trial.params["k"]
    overrides = (sweep / "best_overrides.txt").read_text().split()
    assert f"opt={best_trial.params['opt']}" in overrides
    assert (sweep / "optimization_history.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_is_a_no_op_and_a_changed_plan_is_refused(sweep: Path) -> None:
    n_before = sum(len(load(sweep, n).trials) for n in study_names(sweep))
    again = run_app(sweep, *FAILING)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sum(len(load(sweep, n).trials) for n in study_names(sweep)) == n_before
    changed = run_app(sweep, *FAILING, "hydra.sweeper.params.x='interval(-2.0, 2.0)'")
    assert changed.returncode != 0
    assert "was started with another search plan" in changed.stderr
    assert "params.x: 'interval(-1.0, 1.0)' -> 'interval(-2.0, 2.0)'" in changed.stderr
    assert "Traceback" not in changed.stderr
    assert sum(len(load(sweep, n).trials) for n in study_names(sweep)) == n_before


def test_budget_guard_refuses_before_any_trial(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    gpu = ["trainer.accelerator=gpu", "hydra.sweeper.epoch_seconds=3600", "hydra.sweeper.max_gpu_hours=5"]
    refused = run_app(sweep_dir, *gpu)
    assert refused.returncode != 0
    assert "max_gpu_hours: the plan needs an estimated 35.0 GPU-hours (> 5)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert re.search(r"explore +6 trials x 3 epochs x data 0.5: 9.00 core-h, 9.00 GPU-h", refused.stdout)
    assert study_names(sweep_dir) == []
    one = ["hydra.sweeper.stages=[{name: only, n_trials: 1}]", "hydra.sweeper.refit.n_seeds=0"]
    allowed = run_app(sweep_dir, *gpu, *one, "hydra.sweeper.allow_over_budget=true", "hydra.sweeper.plots=false")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert len(load(sweep_dir, "smoke-s0").trials) == 1
