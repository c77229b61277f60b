"""The staged search on the real cluster: ``python -m rna_hpc.train -m hpo=smoke launcher=slurm`` on a sliver of the
real structures. Every trial is its own Slurm job, two in flight, a freed slot refilled at once; a trial job's
Lightning callback prunes it through the shared journal; the refit goes out as one array; each stage writes its
summary, best parameters and plots. The budget is printed from the Slurm launcher's resources, and a plan above
``hpo.max_gpu_hours`` is refused before anything is submitted.

The search space adds ``model.generator.prior=choice(ss_model, none)``: without a prior Stage D starts from noise,
so those trials validate far below the others (about 0.03 TM against 0.17). With sampler seed 4 (and random
sampling throughout stage 0) the trials draw ss_model, ss_model, ss_model, none, none, and a threshold pruner at
0.1 stops the two without a prior at their first validation. (The ss_model trials differ by 1e-4 TM, so a median
pruner's verdict on them would depend on which trial jobs had finished first on a loaded cluster.)
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sliver import SLIVER

from rna_hpc.hpo.storage import make_storage

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
PRUNER = "{_target_: optuna.pruners.ThresholdPruner, lower: 0.1}"
SEARCH = (
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.sampler.seed=4",
    "hydra.sweeper.sampler.n_startup_trials=10",
    "model.generator.prior=choice(ss_model,none)",
    f"hydra.sweeper.stages=[{{name: explore, n_trials: 5, overrides: ['trainer.max_epochs=4'], pruner: {PRUNER}}},"
    f" {{name: narrow, n_trials: 2, top_k: 2, overrides: ['trainer.max_epochs=2'], pruner: {PRUNER}}}]",
)
STUDY = "default-smoke"


def search(cwd: Path, data_dir: Path, *overrides: str, timeout: float = 480) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rna_hpc.train", "-m", "hpo=smoke", "launcher=slurm", f"paths.data_dir={data_dir}"]
    return subprocess.run(
        cmd + list(overrides),
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, rna3d_dir: Path) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("hpo_slurm")
    out = search(cwd, rna3d_dir, *SLIVER, *SEARCH)
    assert out.returncode == 0, out.stdout[-6000:]
    return cwd, out.stdout


def sweep_dir(cwd: Path) -> Path:
    return cwd / "outputs" / "scratch" / "hpo" / STUDY


def load(cwd: Path, suffix: str) -> optuna.Study:
    storage = make_storage(str(sweep_dir(cwd) / "optuna.journal"))
    return optuna.load_study(study_name=f"{STUDY}-{suffix}", storage=storage)


def test_budget_is_printed_from_the_slurm_resources(sweep: tuple[Path, str]) -> None:
    _, stdout = sweep
    assert (
        "1 node(s) x 1 task(s) x 1 cpu(s) = 1 cores, 0 GPUs (RnaHpcSlurmLauncher, time limit 10 min x 4 run(s))"
        in stdout
    )
    # 5 trials x 4 epochs x 5 s x 0.02 of the data on 1 core; at most 5 x 10 min x 4 runs at the time limits
    assert re.search(r"explore +5 trials x 4 epochs x data 0.02: 0.00056 core-h, 0 GPU-h \(at most 3.33 core-h", stdout)


def test_pruned_by_the_trial_jobs_through_the_shared_journal(sweep: tuple[Path, str], wait_final: Callable) -> None:
    cwd, _ = sweep
    s0 = load(cwd, "s0")
    priors = [t.params["model.generator.prior"] for t in s0.trials]
    assert priors == ["ss_model", "ss_model", "ss_model", "none", "none"], priors
    states = [t.state for t in s0.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED] * 2, states
    for t in s0.trials[3:]:  # stopped at the first validation of four, with the value reported there
        assert sorted(t.intermediate_values) == [0] and t.value == t.intermediate_values[0]
        assert t.value < min(c.value for c in s0.trials[:3])
        assert f"++trial.storage={sweep_dir(cwd) / 'optuna.journal'}" in t.user_attrs["overrides"]
        job_log = (Path(t.user_attrs["run_dir"]) / "train.log").read_text()
        assert re.search(rf"trial {STUDY}-s0 #{t.number} pruned at step 0", job_log)
        assert "max_epochs=4` reached" not in job_log
    # 5 + 2 trial jobs, each its own submission, and the 2-seed refit as one array; pruned jobs end normally too
    jobs = wait_final(cwd, 9)
    assert len(jobs) == 9 and set(jobs.values()) == {"COMPLETED"}, jobs
    assert len({job_id.split("_")[0] for job_id in jobs}) == 8
    assert len([job_id for job_id in jobs if "_" in job_id]) == 2, jobs


def test_freed_slots_are_refilled_while_other_trials_run(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    trials = load(cwd, "s0").trials
    spans = [(t.datetime_start, t.datetime_complete) for t in trials]
    refilled_early = []
    for k, (start, _) in enumerate(spans):
        in_flight = [i for i, (s, e) in enumerate(spans) if s <= start < e]
        assert len(in_flight) <= 2, f"trial {k} started with trials {in_flight} in flight"
        finished = [i for i, (_, e) in enumerate(spans) if e <= start]
        assert len(finished) >= k - 1, f"trial {k} started before a slot was free ({finished} finished)"
        if k >= 2 and len(in_flight) == 2:
            refilled_early.append(k)
    assert spans[1][0] < spans[0][1]  # two in flight from the start
    assert refilled_early, "every refill waited for all trials in flight: the slots ran as batches"


def test_stage_outputs_and_refit(sweep: tuple[Path, str]) -> None:
    cwd, _ = sweep
    out = sweep_dir(cwd)
    for stage, n in (("stage0-explore", 5), ("stage1-narrow", 2)):
        with open(out / stage / "summary.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n and all(r["run_dir"] for r in rows)
        best = yaml.safe_load((out / stage / "best_params.yaml").read_text())
        assert best["model"]["generator"]["prior"] == "ss_model" and 1e-4 <= best["lr"] <= 3e-3
        assert (out / stage / "optimization_history.png").stat().st_size > 0
    assert {r["state"] for r in csv.DictReader(open(out / "stage0-explore" / "summary.csv"))} == {"COMPLETE", "PRUNED"}
    s1, refit = load(cwd, "s1"), load(cwd, "refit")
    assert s1.user_attrs["space_text"]["model.generator.prior"] == "{ss_model}"  # narrowed to the top 2's choice
    assert refit.user_attrs["parent_study"] == f"{STUDY}-s1" and refit.user_attrs["refit_n"] == 2
    assert sorted(t.user_attrs["seed"] for t in refit.trials) == [0, 1]
    assert all(t.state == TrialState.COMPLETE for t in refit.trials)
    assert (out / "best_params.yaml").read_text().count("refit over 2 seeds") == 1


def test_plan_above_max_gpu_hours_is_refused_before_submission(
    tmp_path: Path, rna3d_dir: Path, sacct: Callable
) -> None:
    gpu = ("trainer=gpu", "trainer.devices=2", "hydra.launcher.cpus_per_task=2", "hydra.sweeper.epoch_seconds=600")
    out = search(tmp_path, rna3d_dir, *gpu, "hpo.max_gpu_hours=1", timeout=120)
    assert out.returncode != 0
    assert "1 node(s) x 2 task(s) x 2 cpu(s) = 4 cores, 2 GPUs" in out.stdout
    # explore: 3 trials x 1 epoch x 600 s x 0.5 of the data = 0.25 h per core / GPU; narrow and refit 2 x 2 x 600 s
    assert re.search(r"explore +3 trials x 1 epochs x data 0.5: 1.00 core-h, 0.5 GPU-h", out.stdout)
    assert "total            6.33 core-hours, 3.17 GPU-hours" in out.stdout
    assert "hpo.max_gpu_hours: the plan needs an estimated 3.2 GPU-hours (> 1)" in out.stdout
    assert "hpo.allow_over_budget=true" in out.stdout and "Traceback" not in out.stdout
    assert sacct(tmp_path) == {}  # nothing submitted, no study started
    assert optuna.get_all_study_names(make_storage(str(sweep_dir(tmp_path) / "optuna.journal"))) == []
