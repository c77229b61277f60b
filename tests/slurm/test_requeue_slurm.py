"""Training jobs that survive the cluster: ``scontrol requeue``, USR2, a real time limit, a wiped scratch dir, a
truncated checkpoint and a SIGKILL in mid-consolidation, each on the real local Slurm with a sliver of the real data;
and a job preempted more often than its launcher allows, which stops.

Each test starts ``python -m rna_hpc.train -m launcher=slurm`` (one job) in the background, interferes with the job
at a step boundary it waits for, and checks that the job finishes with the optimizer steps of an uninterrupted run
(``step S/T``: T is Lightning's estimate for the whole fit), resumed from the checkpoint it should have used. Each
prints the work lost per interruption, which must stay within one checkpoint interval.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from read_gate import ReadGate

from rna_hpc.checkpoint.io import TEMP_NAME, read_sidecar, sha256_file
from rna_hpc.checkpoint.manifest import read_manifest, verify_manifest
from rna_hpc.checkpoint.torch_load import safe_torch_load
from rna_hpc.job.resume import find_resume_checkpoint

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
EVERY = 2  # checkpoint.every_n_steps
TINY = (
    "data=rna3d",
    "data.fraction=0.03",  # 16 targets: 8 batches of 2 per epoch on one task
    "data.max_length=40",
    "data.val_max_length=64",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "model.generator.n_steps=4",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    f"checkpoint.every_n_steps={EVERY}",
    "hydra.launcher.timeout_min=10",
)


def _poll(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s still waiting for {what}")
        time.sleep(interval)
    return value


class Sweep:
    """One training job submitted in the background, and where its pieces are."""

    def __init__(self, cwd: Path, data_dir: Path, *overrides: str) -> None:
        self.cwd = cwd
        cmd = [sys.executable, "-m", "rna_hpc.train", "-m", "launcher=slurm", f"paths.data_dir={data_dir}", *TINY]
        env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
        self.process = subprocess.Popen(
            cmd + list(overrides), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def _one(self, pattern: str) -> Path | None:
        found = sorted(self.cwd.glob(pattern))
        return found[0] if found else None

    def _job_folder(self) -> Path | None:
        """The newest submission's job folder (``submitit/train/<time>/<job id>``)."""
        folders = sorted(self.cwd.glob("outputs/shared/submitit/train/*/*"))
        found = [p for p in folders if re.fullmatch(r"\d+(_\d+)?", p.name) and any(p.glob("*_submitted.pkl"))]
        return found[-1] if found else None

    @property
    def job_id(self) -> str:
        """The Slurm id of the job (``<array>_<task>`` for an array task), from its submitit folder."""
        return _poll(self._job_folder, 120, "the submitit job folder").name

    @property
    def run_dir(self) -> Path:
        return _poll(lambda: self._one("outputs/scratch/default/*/0"), 120, "the run dir")

    @property
    def shared_dir(self) -> Path:
        return _poll(lambda: self._one("outputs/shared/default/*/0"), 120, "the shared dir")

    def steps_saved(self, directory: Path) -> list[int]:
        return sorted(int(p.name.split("-")[1].split(".")[0]) for p in directory.glob("ckpt/step-*.ckpt.sha256"))

    def wait_for_step(self, step: int, timeout: float = 300) -> int:
        """Wait until the run dir holds a complete ``step-<N>.ckpt`` with N >= ``step``; return N."""

        def reached() -> int:
            assert self.process.poll() is None, self.finish()[1][-3000:]
            saved = self.steps_saved(self.run_dir)
            return saved[-1] if saved and saved[-1] >= step else 0

        return _poll(reached, timeout, f"a checkpoint at step {step}")

    def finish(self, timeout: float = 420) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out

    def succeeded(self, timeout: float = 420) -> str:
        """Wait for the sweep, check that it succeeded, and return rank 0's log (every attempt of the job)."""
        rc, out = self.finish(timeout)
        assert rc == 0, out[-4000:]
        return self.rank0_log()

    def stop(self) -> None:
        """Cancel this sweep's own job and end its launcher process if the test left them running."""
        if self.process.poll() is None:
            folder = self._job_folder()
            if folder is not None:
                subprocess.run(["scancel", folder.name], timeout=30, check=False)
            self.process.kill()
            self.process.communicate(timeout=60)

    def rank0_log(self) -> str:
        return self.rank_log(0)

    def rank_log(self, rank: int) -> str:
        """The job log of one rank (stdout and stderr of every attempt)."""
        folder = _poll(self._job_folder, 120, "the submitit job folder")
        return "".join(p.read_text() for p in sorted(folder.glob(f"{self.job_id}_{rank}_log.*")))


@pytest.fixture
def start_sweep(rna3d_dir: Path) -> Iterator[Callable[..., Sweep]]:
    """``start_sweep(cwd, *overrides)``: a Sweep, stopped (its job cancelled) when the test ends early."""
    started: list[Sweep] = []

    def start(cwd: Path, *overrides: str) -> Sweep:
        started.append(Sweep(cwd, rna3d_dir, *overrides))
        return started[-1]

    yield start
    for sweep in started:
        sweep.stop()


def job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def requeue(job_id: str) -> None:
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)


def wait_pending(job_id: str, timeout: float = 90) -> None:
    """Wait until the requeued job's processes are gone and it waits to run again."""
    _poll(lambda: job_state(job_id) == "PENDING", timeout, f"job {job_id} to be requeued (pending)")


def progress(log: str) -> list[tuple[int, int]]:
    """``(step, total)`` of every progress line (one per optimizer step), in order."""
    return [(int(s), int(t)) for s, t in re.findall(r"epoch \d+ step (\d+)/(\d+) ", log)]


def resumes(log: str) -> list[tuple[str, int]]:
    return [(path, int(step)) for path, step in re.findall(r"resuming from (\S+) \(step (\d+)\)", log)]


def lost_steps(log: str) -> list[int]:
    """Per attempt after the first: steps done before the interruption minus the step resumed from."""
    lost = []
    for before, after in zip(re.split(r"resuming from", log)[:-1], resumes(log), strict=True):
        done = [s for s, _ in progress(before)]
        lost.append(max([after[1], *done[-1:]]) - after[1])
    return lost


def final_steps(sweep: Sweep) -> tuple[int, int]:
    """(optimizer steps of the finished run, steps of an uninterrupted run)."""
    steps = safe_torch_load(sweep.shared_dir / "ckpt" / "last.ckpt")["global_step"]
    totals = {t for _, t in progress(sweep.rank0_log())}
    assert len(totals) == 1, totals
    return steps, totals.pop()


def test_scontrol_requeue_resumes_a_ddp_job_from_its_periodic_checkpoint(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    sweep = start_sweep(tmp_path, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=40")  # outlasts KillWait
    sweep.wait_for_step(2 * EVERY)
    requeue(sweep.job_id)  # as a preemption: SIGTERM (ignored by submitit), SIGKILL after KillWait
    log = sweep.succeeded()
    (resumed,) = resumes(log)
    assert "received signal 15: checkpoint at the next step, training continues" in log
    steps, total = final_steps(sweep)
    restarts = read_manifest(sweep.shared_dir)["slurm"]["restart_count"]
    print(
        f"scontrol requeue: resumed from step {resumed[1]} ({Path(resumed[0]).name}), lost {lost_steps(log)} "
        f"step(s) (interval {EVERY}); {steps} steps, {total} uninterrupted; Slurm restarts {restarts}"
    )
    assert resumed[0].startswith(str(sweep.run_dir)) and max(lost_steps(log)) <= EVERY and resumed[1] < total
    assert steps == total and restarts == 1 and verify_manifest(sweep.shared_dir) == []
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]


def test_usr2_checkpoints_on_rank_0_then_requeues_and_the_ddp_job_finishes(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    ddp = ("trainer=ddp", "trainer.devices=2")
    sweep = start_sweep(tmp_path, *ddp, "trainer.max_epochs=6", "checkpoint.every_n_steps=100")
    # 4 steps an epoch: step 5 begins epoch 1, whose validation (where a signal saves nothing) comes after step 8
    _poll(lambda: len(progress(sweep.rank0_log())) >= 5, 300, "five optimizer steps")
    subprocess.run(["scancel", "--signal=USR2", sweep.job_id], check=True, timeout=30)  # what the time limit sends
    log = sweep.succeeded()
    (resumed,) = resumes(log)
    steps, total = final_steps(sweep)
    print(
        f"USR2: checkpoint_now saved step {resumed[1]}, lost {lost_steps(log)} step(s) with no periodic checkpoint; "
        f"{steps} steps, {total} uninterrupted"
    )
    assert "this job is timed-out" in log and re.search(r"Requeued job \S+ \(2 remaining timeouts\)", log)
    assert "Not checkpointing nor requeuing since I am a slave (procid=1)" in sweep.rank_log(1)  # no save, no hang
    assert max(lost_steps(log)) <= 1 and steps == total
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]


def test_a_job_preempted_more_often_than_allowed_stops_and_keeps_its_checkpoints(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    sweep = start_sweep(tmp_path, "trainer.max_epochs=100", "hydra.launcher.max_num_preemptions=1")
    sweep.wait_for_step(EVERY)
    requeue(sweep.job_id)  # the one preemption allowed: the job resumes
    (_, resumed), *_ = _poll(lambda: resumes(sweep.rank0_log()), 300, "the first requeued attempt to resume")
    sweep.wait_for_step(resumed + EVERY)  # training again
    requeue(sweep.job_id)  # one too many: the next attempt stops before training
    rc, out = sweep.finish()
    error = json.loads((sweep.shared_dir / "error.json").read_text())
    saved = safe_torch_load(sweep.shared_dir / "ckpt" / "last.ckpt")["global_step"]
    print(
        f"max_num_preemptions=1, requeued twice: exit code {rc}, {error['type']} after {error['restart_count']} "
        f"restarts; the shared copy keeps step {saved} of the run"
    )
    assert rc != 0 and len(resumes(sweep.rank0_log())) == 1
    assert error["type"] == "RequeueLimitReached" and error["restart_count"] == 2
    limit = "requeued 2 times by preemption or scontrol requeue (hydra.launcher.max_num_preemptions=1)"
    assert limit in error["message"]
    assert "1 of 1 job(s) failed" in out and saved >= EVERY and verify_manifest(sweep.shared_dir) == []
    assert list(wait_final(tmp_path, 1).values()) == ["FAILED"]  # Slurm sees the failure; no further attempt
    first_job = sweep.job_id
    again = start_sweep(  # the same sweep dir, a higher limit: the run goes on from its checkpoints
        tmp_path,
        "trainer.max_epochs=100",
        f"hydra.sweep.dir={sweep.run_dir.parent}",
        "hydra.launcher.max_num_preemptions=5",
    )
    _poll(lambda: again.job_id != first_job, 120, "the new submission")
    ((_, step),) = _poll(lambda: resumes(again.rank0_log()), 300, "the resubmitted job to resume")
    print(f"submitted again with max_num_preemptions=5: resumed from step {step}")
    assert step >= saved


def step_times(log: str) -> list[float]:
    """The time of each progress line (one per optimizer step), in seconds."""
    stamps = re.findall(r"^\[([\d-]+ [\d:]+),(\d+)\]\[rna_hpc.progress\]\[INFO\] - epoch \d+ step", log, re.M)
    return [time.mktime(time.strptime(t, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000 for t, ms in stamps]


def test_real_time_limit_requeues_until_the_training_budget_is_done(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    # slurmctld checks limits every 30 s and signals at the first check t with t + delay + 30 >= limit: with a
    # 1-minute limit and a 5 s delay USR2 comes 25-55 s after a start (about 47 s after a requeued start).
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    (tmp_path / "calibration").mkdir()
    calibration = start_sweep(tmp_path / "calibration", cache, "trainer.max_epochs=2")  # the same job, 16 steps
    times = step_times(calibration.succeeded())
    # the median step, not the mean: a slow first step or the validation in between would overstate it, and too few
    # epochs could then finish before the time limit signals
    epoch_s = 8 * statistics.median(b - a for a, b in itertools.pairwise(times))
    # about 70 s of training: more than any one attempt can do, however fast the job starts (USR2 by 55 s at the
    # latest), so the budget needs at least one requeue
    epochs = max(4, math.ceil(70 / epoch_s))
    limits = ("hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5", "hydra.launcher.max_num_timeout=8")
    sweep = start_sweep(tmp_path, cache, f"trainer.max_epochs={epochs}", *limits)
    log = sweep.succeeded(timeout=900)
    requeues = set(re.findall(r"Requeued job \S+ \((\d+) remaining timeouts\)", log))  # each is logged twice
    steps, total = final_steps(sweep)
    print(
        f"time limit 1 min, {epochs} epochs of {epoch_s:.1f} s: {len(requeues)} timeout requeue(s) (at most 8), "
        f"resumed from steps {[s for _, s in resumes(log)]}, lost {lost_steps(log)} step(s) per requeue; "
        f"{steps} steps, {total} uninterrupted"
    )
    assert 1 <= len(requeues) <= 8 and len(resumes(log)) == len(requeues)
    assert steps == total and max(lost_steps(log)) <= EVERY
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]


def test_scratch_wiped_while_requeued_resumes_from_the_shared_copy(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    sweep = start_sweep(tmp_path, "trainer.max_epochs=10")
    sweep.wait_for_step(2 * EVERY)
    run_dir, job_id = sweep.run_dir, sweep.job_id
    requeue(job_id)
    wait_pending(job_id)
    shutil.rmtree(run_dir)  # scratch purged, or the job restarts on a node that never saw it
    log = sweep.succeeded()
    (resumed,) = resumes(log)
    steps, total = final_steps(sweep)
    print(
        f"scratch wiped: resumed from step {resumed[1]} of the shared copy {resumed[0]}, lost {lost_steps(log)} "
        f"step(s) (interval {EVERY}); {steps} steps, {total} uninterrupted"
    )
    assert resumed[0].startswith(str(sweep.shared_dir / "ckpt")) and max(lost_steps(log)) <= EVERY
    assert steps == total and verify_manifest(sweep.shared_dir) == []
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]


def test_truncated_newest_checkpoint_is_skipped_for_the_previous_one(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    sweep = start_sweep(tmp_path, "trainer.max_epochs=10")
    sweep.wait_for_step(2 * EVERY)
    job_id = sweep.job_id
    requeue(job_id)
    wait_pending(job_id)
    newest = find_resume_checkpoint(sweep.run_dir, sweep.shared_dir)  # what the restarted job would take
    newest_step = safe_torch_load(newest)["global_step"]
    with open(newest, "r+b") as f:  # a write cut short (a hard-linked step file is cut with it)
        f.truncate(newest.stat().st_size // 2)
    log = sweep.succeeded()
    (resumed,) = resumes(log)
    warning = f"skipping checkpoint {newest}: sha256 differs from its sidecar (truncated or changed)"
    steps, total = final_steps(sweep)
    print(
        f"truncated {newest.name} (step {newest_step}): resumed from {Path(resumed[0]).name} (step {resumed[1]}), "
        f"lost {lost_steps(log)} step(s); {steps} steps, {total} uninterrupted"
    )
    assert warning in log and resumed[0] != str(newest) and resumed[1] <= newest_step
    assert max(lost_steps(log)) <= 2 * EVERY  # the newest interval is lost with the broken file
    assert steps == total
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (exited, or killed and waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_sigkill_in_mid_consolidation_leaves_no_partial_file_and_the_requeued_job_completes_it(
    tmp_path: Path, start_sweep: Callable, wait_final: Callable
) -> None:
    sweep = start_sweep(tmp_path, "trainer.max_epochs=10")
    sweep.wait_for_step(EVERY)
    shared_ckpt = sweep.shared_dir / "ckpt"
    _poll(lambda: (sweep.shared_dir / "manifest.json").is_file(), 120, "the first consolidation")

    def mid_copy(pid: int, source: Path) -> bool:
        """A copy of a checkpoint new to shared storage, with its first chunk written to the temp file."""
        temp = shared_ckpt / f".{source.name}.tmp-{pid}"
        return not (shared_ckpt / source.name).exists() and temp.is_file() and temp.stat().st_size > 0

    with ReadGate(sweep.run_dir / "ckpt", mid_copy) as gate:  # holds rank 0 in the copy's next read()
        assert gate.held.wait(300), "no consolidation copied a new checkpoint"
        pid, source = gate.caught
        temp = shared_ckpt / f".{source.name}.tmp-{pid}"
        written, size = temp.stat().st_size, source.stat().st_size
        requeue(sweep.job_id)  # SIGTERM, then SIGKILL after KillWait: it lands in mid-copy
        _poll(lambda: _gone(pid), 60, f"rank 0 (pid {pid}) to be killed in mid-copy")
        visible = sorted(p.name for p in shared_ckpt.iterdir())
        assert source.name not in visible and temp.name in visible  # only the killed writer's temp
        assert sha256_file(source) == read_sidecar(source)  # the scratch copy is kept, whole
    log = sweep.succeeded()
    (resumed,) = resumes(log)
    steps, total = final_steps(sweep)
    print(
        f"SIGKILL in mid-copy of {source.name} ({written} of {size} bytes in its temp file, not yet renamed): nothing "
        f"under the final name; resumed from "
        f"step {resumed[1]}, lost {lost_steps(log)} step(s); {steps} steps, {total} uninterrupted; "
        "the next consolidation removed the temp and verifies"
    )
    assert not [p for p in sweep.shared_dir.rglob("*") if TEMP_NAME.match(p.name)]
    assert verify_manifest(sweep.shared_dir) == [] and max(lost_steps(log)) <= EVERY and steps == total
    assert list(wait_final(tmp_path, 1).values()) == ["COMPLETED"]
