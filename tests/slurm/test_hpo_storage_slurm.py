"""Many trial jobs on one storage, on the real cluster: the sweeper tests' tiny app (written in hydra-optuna-sweeper's
vocabulary) searched by the staged sweeper with 32 trial jobs in flight, against the PostgreSQL server of
``db/start.sh`` (a fresh database per test) and against the journal file (the embedded default).

The trial jobs go out through hydra-submitit-launcher's ``submitit_slurm``: rna_hpc's own Slurm launcher composes and
validates rna_hpc's training config for every job, which this app is not. Each job reports its epochs to the storage
and may prune itself there; the sweeper tells the storage every other outcome. What the storage received is read
from the storage's own record of writes: the journal file's operations, and in PostgreSQL a trigger on Optuna's
``trials`` table that logs every write of a finished state. So "told once" means one finishing write per trial.

The submitit folder is flat (no ``%j``): submitit creates a ``%j`` folder only after ``sbatch`` returns, and this
cluster starts a job within milliseconds, so with 32 submissions at once on a busy host a job could start before its
folder existed; Slurm then cannot open its stdout and the job dies without a log (seen: signal 53).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from rna_hpc.hpo.resume import ORPHAN_REASON
from rna_hpc.hpo.storage import make_storage
from rna_hpc.hpo.trial_job import RESULT_ATTR

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))  # the sweeper tests' tiny app and its harness
from hpo_app.harness import command, env  # noqa: E402

pytestmark = pytest.mark.slurm

STUDY = "smoke-s0"
FINISHED = {1: "COMPLETE", 2: "PRUNED", 3: "FAIL"}  # optuna.trial.TrialState values in the journal


def search_overrides(n_jobs: int, n_trials: int, step_seconds: float) -> list[str]:
    return [
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.submitit_folder=${hydra.sweep.dir}/.submitit",  # flat: see the module docstring
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.stages=[{{name: wide, n_trials: {n_trials}, overrides: ['trainer.max_epochs=3']}}]",
        "hydra.sweeper.refit.n_seeds=0",
        "hydra.sweeper.plots=false",
        f"step_seconds={step_seconds}",
    ]


# -- the storages and their record of writes --------------------------------------------------------------------
_TRIGGER = """
CREATE TABLE trial_finishes (trial_id integer, state text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_trial_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO trial_finishes (trial_id, state) VALUES (NEW.trial_id, NEW.state::text); RETURN NEW; END $$;
CREATE TRIGGER trial_finish AFTER INSERT OR UPDATE OF state ON trials FOR EACH ROW
  WHEN (NEW.state::text IN ('COMPLETE', 'PRUNED', 'FAIL')) EXECUTE FUNCTION log_trial_finish();
"""


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Storage:
    """One storage under test: the sweeper override that selects it and its record of finishing writes."""

    def __init__(self, kind: str, sweep: Path, url: str | None) -> None:
        self.kind, self.sweep, self.url = kind, sweep, url
        self.spec = url if url is not None else str(sweep / "optuna.journal")
        if url is not None:  # Optuna's tables first, then the trigger that records every finishing write
            make_storage(url)
            import psycopg

            with psycopg.connect(_libpq(url), autocommit=True) as conn:
                conn.execute(_TRIGGER)

    @property
    def overrides(self) -> list[str]:
        return [f"hydra.sweeper.storage={self.url}"] if self.url is not None else []

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=STUDY, storage=make_storage(self.spec))

    def finishing_writes(self, study: optuna.Study) -> dict[int, list[str]]:
        """Trial number -> the finished states written for it, in order."""
        number = {t._trial_id: t.number for t in study.get_trials(deepcopy=False)}
        if self.url is None:
            ops = [json.loads(line) for line in Path(self.spec).read_text().splitlines()]
            finishes = [op for op in ops if op["op_code"] == 6 and op["state"] in FINISHED]  # SET_TRIAL_STATE_VALUES
            rows = [(op["trial_id"], FINISHED[op["state"]]) for op in finishes]
        else:
            import psycopg

            with psycopg.connect(_libpq(self.url)) as conn:
                rows = conn.execute("SELECT trial_id, state FROM trial_finishes ORDER BY at").fetchall()
        writes: dict[int, list[str]] = {}
        for trial_id, state in rows:
            writes.setdefault(number[trial_id], []).append(state)
        return writes


@pytest.fixture(params=["postgresql", "journal"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return Storage(request.param, tmp_path / "sweep", url)


def run_search(storage: Storage, overrides: list[str], timeout: float) -> subprocess.CompletedProcess:
    sweep = storage.sweep
    cmd = command(sweep, *overrides, *storage.overrides)
    return subprocess.run(cmd, cwd=sweep.parent, env=env(), capture_output=True, text=True, timeout=timeout)


def start_search(storage: Storage, overrides: list[str], log: Path) -> subprocess.Popen:
    """The sweeper in its own process group: its slot workers die with it, its Slurm jobs do not."""
    with open(log, "w") as out:
        return subprocess.Popen(
            command(storage.sweep, *overrides, *storage.overrides),
            cwd=storage.sweep.parent,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# -- checks shared by both tests --------------------------------------------------------------------------------
def _max_in_flight(trials: list[optuna.trial.FrozenTrial]) -> int:
    events = sorted(
        [(t.datetime_start, 1) for t in trials] + [(t.datetime_complete, -1) for t in trials], key=lambda e: e
    )
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def assert_told_once(storage: Storage, study: optuna.Study) -> None:
    """Every trial numbered once, finished by exactly one write whose state it kept (a PRUNED one stays PRUNED)."""
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    writes = storage.finishing_writes(study)
    assert sorted(writes) == [t.number for t in trials], "a trial finished without a write, or an unknown one"
    twice = {n: w for n, w in writes.items() if len(w) != 1}
    assert not twice, f"trials told more than once: {twice}"
    for t in trials:
        assert writes[t.number] == [t.state.name], (t.number, writes[t.number], t.state.name)
    for t in trials:
        if t.state == TrialState.PRUNED:  # pruned by its job, with the last value it reported
            assert t.value == t.intermediate_values[max(t.intermediate_values)]
            assert len(t.intermediate_values) < 3


def assert_jobs_ran_their_own_trial(storage: Storage, trials: list[optuna.trial.FrozenTrial]) -> None:
    unnumbered = [t.number for t in trials if "job_num" not in t.user_attrs]  # killed while the sweeper asked them
    assert all(trials[n].user_attrs.get("orphaned") for n in unnumbered), unnumbered
    nums = [t.user_attrs["job_num"] for t in trials if "job_num" in t.user_attrs]
    assert len(nums) == len(set(nums)), "two trials share a Hydra job number"
    for t in trials:
        if not t.user_attrs.get("orphaned"):
            job_dir = Path(t.user_attrs["run_dir"])
            assert yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) == t.user_attrs["overrides"]
            assert f"++trial.number={t.number}" in t.user_attrs["overrides"]


# -- the tests --------------------------------------------------------------------------------------------------
def test_32_trial_jobs_in_flight_lose_and_duplicate_nothing(storage: Storage, wait_final: Callable) -> None:
    out = run_search(storage, search_overrides(n_jobs=32, n_trials=32, step_seconds=0.1), timeout=540)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "32 trial slot(s) (SlurmLauncher)" in out.stdout + out.stderr

    study = storage.study()
    trials = study.trials
    assert len(trials) == 32 and _max_in_flight(trials) == 32  # all 32 asked before the first finished
    failed = {t.number: t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
    assert not failed, failed
    assert any(t.state == TrialState.PRUNED for t in trials), "nothing pruned: the PRUNED checks would be empty"
    assert sorted(t.user_attrs["job_num"] for t in trials) == list(range(32))
    assert_told_once(storage, study)
    assert_jobs_ran_their_own_trial(storage, trials)
    jobs = wait_final(storage.sweep.parent, 32, timeout=120)
    assert len(jobs) == 32 and set(jobs.values()) == {"COMPLETED"}, jobs  # 32 Slurm jobs, one per trial


def _wait_mid_stage(storage: Storage, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until the stage has 2 finished trials and a RUNNING one whose job has reported an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        try:
            trials = storage.study().trials
        except KeyError:  # the study does not exist yet
            trials = []
        finished = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if len(finished) >= 2 and running:
            return
        time.sleep(0.5)
    pytest.fail(f"the stage never reached its middle in {timeout}s")


def test_killed_sweeper_resumes_without_losing_a_trial(storage: Storage, tmp_path: Path, wait_final: Callable) -> None:
    overrides = search_overrides(n_jobs=4, n_trials=8, step_seconds=1.0)
    proc = start_search(storage, overrides, log=tmp_path / "first.log")
    try:
        _wait_mid_stage(storage, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its slot workers; the Slurm jobs run on
        proc.wait(timeout=60)
    submitted = len(list((storage.sweep / ".submitit").glob("*_submitted.pkl")))
    wait_final(storage.sweep.parent, submitted, timeout=180)  # the dead sweeper's jobs end; nobody told their results

    before = storage.study().trials
    kept = {t.number: (t.state, t.value) for t in before if t.state.is_finished()}
    left_running = [t for t in before if t.state == TrialState.RUNNING]
    assert len(kept) >= 2 and left_running

    again = run_search(storage, overrides, timeout=400)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]

    study = storage.study()
    trials = study.trials
    for number, (state, value) in kept.items():
        assert (trials[number].state, trials[number].value) == (state, value)
    for orphan in left_running:
        t = trials[orphan.number]
        retries = [r for r in trials if r.user_attrs.get("retry_of") == orphan.number]
        if RESULT_ATTR in orphan.user_attrs:  # its job outlived the sweeper and recorded its result: told, not re-run
            assert t.state == TrialState.COMPLETE and t.user_attrs["recovered"] is True and not retries
            assert t.value == pytest.approx(orphan.user_attrs[RESULT_ATTR])
            continue
        # given up, and its parameters run once more
        assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == ORPHAN_REASON
        assert len(retries) == 1 and retries[0].state.is_finished()
        assert set(retries[0].params) == {"x", "y", "k", "opt"}
        if "overrides" in orphan.user_attrs:  # it reached a job: the same parameters again
            assert retries[0].params == orphan.params
        else:  # killed while the sweeper was still asking it: what it had, the rest sampled now
            assert orphan.params.items() <= retries[0].params.items()
    counted = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("orphaned")]
    n_orphans = sum(1 for t in trials if t.user_attrs.get("orphaned"))
    assert len(counted) == 8 and len(trials) == 8 + n_orphans  # no trial lost, none run twice
    assert {t.state for t in counted} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert_told_once(storage, study)
    assert_jobs_ran_their_own_trial(storage, trials)
