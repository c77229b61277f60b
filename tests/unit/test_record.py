"""The sweep record: atomic, merged by job number, readable from the sweep dir and the shared sweep dir."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from submitit.core.core import Job

from rna_hpc.config import CONFIG_DIR
from rna_hpc.errors import InputError
from rna_hpc.launch.plan import PlannedJob
from rna_hpc.launch.record import (
    RECORD_NAME,
    JobRecord,
    SweepRecord,
    find_sweep_record,
    job_dirs,
    read_sweep_record,
    record_submission,
    write_sweep_record,
)


def _record(tmp_path: Path, nums: list[int], shared: Path | None = None) -> SweepRecord:
    shared = shared or tmp_path / "shared" / "default" / "sweep"
    jobs = [
        JobRecord(num=n, overrides=[f"lr={n}"], slurm_job_id=f"7_{n}", run_dir=str(tmp_path / "sweep" / str(n)))
        for n in nums
    ]
    for j in jobs:
        j.shared_dir = str(shared / str(j.num))
    return SweepRecord(launcher="slurm", sweep_dir=str(tmp_path / "sweep"), overrides=["lr=0,1"], jobs=jobs)


def test_write_then_read_round_trip_and_shared_copy(tmp_path: Path) -> None:
    record = _record(tmp_path, [0, 1])
    path = write_sweep_record(tmp_path / "sweep", record)
    assert path == tmp_path / "sweep" / RECORD_NAME
    back = read_sweep_record(path)
    assert [j.num for j in back.jobs] == [0, 1] and back.jobs[1].slurm_job_id == "7_1"
    assert back.created and back.launcher == "slurm" and back.overrides == ["lr=0,1"]
    shared = tmp_path / "shared" / "default" / "sweep"
    assert back.shared_sweep_dir == str(shared)
    assert read_sweep_record(shared) == back  # the copy beside the consolidated results
    assert not list((tmp_path / "sweep").glob(".*.tmp-*"))  # no temp file left behind


def test_later_writes_merge_by_job_number(tmp_path: Path) -> None:
    write_sweep_record(tmp_path / "sweep", _record(tmp_path, [0, 1]))
    first = read_sweep_record(tmp_path / "sweep")
    again = _record(tmp_path, [1, 2])
    again.jobs[0].slurm_job_id = "9"  # job 1 resubmitted
    write_sweep_record(tmp_path / "sweep", again)
    merged = read_sweep_record(tmp_path / "sweep")
    assert [(j.num, j.slurm_job_id) for j in merged.jobs] == [(0, "7_0"), (1, "9"), (2, "7_2")]
    assert merged.created == first.created


def test_concurrent_one_job_writes_all_land(tmp_path: Path) -> None:
    """The staged sweeper launches one job per call from several threads."""
    threads = [
        threading.Thread(target=write_sweep_record, args=(tmp_path / "sweep", _record(tmp_path, [n]))) for n in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [j.num for j in read_sweep_record(tmp_path / "sweep").jobs] == list(range(8))


def test_unreadable_record_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / RECORD_NAME).write_text("{not json")
    with pytest.raises(InputError, match="unreadable sweep record"):
        read_sweep_record(tmp_path)
    (tmp_path / RECORD_NAME).write_text(json.dumps({"jobs": "nope"}))
    with pytest.raises(InputError, match="not a sweep record"):
        read_sweep_record(tmp_path)
    with pytest.raises(InputError, match="no sweep record"):
        read_sweep_record(tmp_path / "missing")
    assert find_sweep_record(tmp_path / "missing") is None


@pytest.fixture()
def sweep_cfg(tmp_path: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"hydra.sweep.dir={tmp_path / 'scratch' / 'exp' / 'sw'}",
                f"paths.shared_dir={tmp_path / 'shared'}",
                "experiment_name=exp",
            ],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.overrides.task = ["lr=1e-3,1e-4", "experiment_name=exp"]
    yield cfg
    GlobalHydra.instance().clear()


def test_record_submission_from_the_launchers_objects(tmp_path: Path, sweep_cfg) -> None:
    folder = tmp_path / "submitit" / "%j"
    submitted = [(PlannedJob(n, [f"lr={lr}"], {}), Job(folder, f"42_{n}")) for n, lr in ((0, 1e-3), (1, 1e-4))]
    record = record_submission("slurm", sweep_cfg, submitted, detached=True)
    assert record.detached and record.launcher == "slurm"
    assert record.overrides == ["lr=1e-3,1e-4", "experiment_name=exp"]
    job = record.jobs[1]
    assert job.num == 1 and job.overrides == ["lr=0.0001"] and job.slurm_job_id == "42_1"
    assert job.run_dir == str(tmp_path / "scratch" / "exp" / "sw" / "1")
    assert job.shared_dir == str(tmp_path / "shared" / "exp" / "sw" / "1")
    assert job.stdout.endswith("42_1/42_1_0_log.out") and job.stderr.endswith("42_1/42_1_0_log.err")
    local = record_submission("local", sweep_cfg, submitted[:1], detached=False)
    assert local.jobs[0].slurm_job_id is None


def test_job_dirs_of_a_composed_job_config(tmp_path: Path, sweep_cfg) -> None:
    with open_dict(sweep_cfg):
        sweep_cfg.hydra.job.num = 3
        sweep_cfg.hydra.runtime.output_dir = str(tmp_path / "scratch" / "exp" / "sw" / "3")
    assert job_dirs(sweep_cfg) == (
        str(tmp_path / "scratch" / "exp" / "sw" / "3"),
        str(tmp_path / "shared" / "exp" / "sw" / "3"),
    )
