"""rna-hpc-status on sweeps whose jobs left real manifests, metrics, error records and Optuna studies."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import optuna
import pytest
from pytorch_lightning.loggers import CSVLogger

from rna_hpc.checkpoint.io import atomic_write_text, sha256_file
from rna_hpc.checkpoint.manifest import build_manifest, write_manifest
from rna_hpc.launch.accounting import parse_sacct
from rna_hpc.launch.env import JobContext
from rna_hpc.launch.identity import RunIdentity
from rna_hpc.launch.node_side import record_failure
from rna_hpc.launch.record import JobRecord, SweepRecord, write_sweep_record
from rna_hpc.status import collect, main

CONFIG = {"objective": "val/tm", "checkpoint": {"monitor": "val/tm", "mode": "max"}}


def _identity(root: Path, num: int) -> RunIdentity:
    return RunIdentity("exp", "sw", num, root / "scratch" / "sw" / str(num), root / "shared" / "exp" / "sw" / str(num))


def _train(identity: RunIdentity, tms: list[float]) -> None:
    """What a run leaves on scratch: Lightning's metrics.csv (val/tm per epoch) and a job log."""
    logger = CSVLogger(save_dir=str(identity.run_dir), name="csv", version="")
    for epoch, tm in enumerate(tms):
        logger.log_metrics({"train/loss": 2.0 - epoch / 10}, step=epoch * 10 + 5)
        logger.log_metrics({"val/tm": tm, "val/loss": 1.5 - epoch / 10, "epoch": epoch}, step=epoch * 10 + 9)
    logger.save()
    atomic_write_text(identity.run_dir / "train.log", "training\n")


def _consolidate(identity: RunIdentity, ended: bool = True) -> None:
    """Copy the run's metrics to shared storage and write the manifest last, as consolidation does."""
    src = identity.run_dir / "csv" / "metrics.csv"
    dst = identity.shared_dir / "csv" / "metrics.csv"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    artifacts = {"csv/metrics.csv": {"sha256": sha256_file(dst), "size": dst.stat().st_size}}
    manifest = build_manifest(
        identity.run_id,
        config=CONFIG,
        started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:10:00+00:00" if ended else None,
        metrics={"val/tm": 0.5},
        artifacts=artifacts,
    )
    write_manifest(identity.shared_dir, manifest)


def _sweep(tmp_path: Path, launcher: str = "local", slurm_ids: bool = False) -> Path:
    """Job 0 finished and consolidated, job 1 failed after training, job 2 not started."""
    ids = [_identity(tmp_path, n) for n in range(3)]
    _train(ids[0], [0.2, 0.35, 0.3])
    _consolidate(ids[0])
    _train(ids[1], [0.1])
    ids[1].shared_dir.mkdir(parents=True)
    try:
        raise RuntimeError("loss exploded\non epoch 1")
    except RuntimeError as err:
        record_failure(err, ids[1], JobContext(job_id="55_1" if slurm_ids else None, hostname="node7"))
    jobs = [
        JobRecord(
            num=i.job_num,
            overrides=[f"lr={i.job_num}", "debug=fast"],
            slurm_job_id=f"55_{i.job_num}" if slurm_ids else None,
            run_dir=str(i.run_dir),
            shared_dir=str(i.shared_dir),
        )
        for i in ids
    ]
    sweep_dir = tmp_path / "scratch" / "sw"
    write_sweep_record(sweep_dir, SweepRecord(launcher=launcher, sweep_dir=str(sweep_dir), jobs=jobs))
    return sweep_dir


def _json_status(capsys, *args: str) -> tuple[int, dict]:
    code = main([*args, "--json", "--no-plots"])
    return code, json.loads(capsys.readouterr().out)


def test_finished_failed_and_pending_jobs(tmp_path: Path, capsys) -> None:
    sweep_dir = _sweep(tmp_path)
    code, status = _json_status(capsys, str(sweep_dir))
    assert code == 1  # a job failed
    done, failed, pending = status["jobs"]
    assert done["state"] == "COMPLETED" and done["consolidated"] is True
    assert (done["epoch"], done["step"]) == (2, 29)
    assert done["latest"] == pytest.approx(0.3) and done["best"] == pytest.approx(0.35)
    assert failed["state"] == "FAILED" and failed["reason"] == "RuntimeError: loss exploded on epoch 1"
    assert failed["node"] == "node7" and failed["consolidated"] is False
    assert failed["log"].endswith("1/train.log")
    assert pending["state"] == "PENDING" and pending["epoch"] is None


def test_the_table(tmp_path: Path, capsys) -> None:
    assert main([str(_sweep(tmp_path)), "--no-plots"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["job", "overrides", "state"] and "best val/tm" in lines[1]
    assert lines[2].split()[:3] == ["#0", "lr=0", "COMPLETED"]  # debug=fast is common to all jobs: left out
    assert "#1 FAILED: RuntimeError: loss exploded on epoch 1" in out
    assert "3 job(s): 1 COMPLETED, 1 FAILED, 1 PENDING" in out


def test_a_changed_artifact_is_not_consolidated(tmp_path: Path, capsys) -> None:
    sweep_dir = _sweep(tmp_path)
    metrics = _identity(tmp_path, 0).shared_dir / "csv" / "metrics.csv"
    metrics.write_text(metrics.read_text() + "\n")
    _, status = _json_status(capsys, str(sweep_dir))
    assert status["jobs"][0]["consolidated"] is False


def test_the_shared_sweep_dir_works_with_and_without_a_record(tmp_path: Path, capsys) -> None:
    _sweep(tmp_path)
    shared = tmp_path / "shared" / "exp" / "sw"
    _, with_record = _json_status(capsys, str(shared))
    assert [j["state"] for j in with_record["jobs"]] == ["COMPLETED", "FAILED", "PENDING"]
    (shared / "sweep.json").unlink()
    code, alone = _json_status(capsys, str(shared))
    assert code == 1 and [j["state"] for j in alone["jobs"]] == ["COMPLETED", "FAILED"]
    assert alone["jobs"][0]["best"] == pytest.approx(0.35)  # from the consolidated metrics.csv


def test_without_sacct_the_state_comes_from_the_files(tmp_path: Path, capsys, monkeypatch) -> None:
    sweep_dir = _sweep(tmp_path, launcher="slurm", slurm_ids=True)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct here
    _, status = _json_status(capsys, str(sweep_dir))
    assert [(j["slurm_job_id"], j["state"]) for j in status["jobs"]] == [
        ("55_0", "COMPLETED"),
        ("55_1", "FAILED"),
        ("55_2", "PENDING"),
    ]


def test_sacct_output_gives_state_requeues_and_pending_array_tasks() -> None:
    text = "\n".join(
        [
            "55_0|REQUEUED|node1|0:0",
            "55_0|REQUEUED|node2|0:0",
            "55_0|RUNNING|node1|0:0",
            "55_1|CANCELLED by 0|node2|0:15",
            "55_[2-3,5%4]|PENDING|None assigned|0:0",
            "",
        ]
    )
    states = parse_sacct(text)
    assert (states["55_0"].state, states["55_0"].requeues, states["55_0"].node_list) == ("RUNNING", 2, "node1")
    assert states["55_1"].state == "CANCELLED" and states["55_1"].terminal
    assert {k for k, v in states.items() if v.state == "PENDING"} == {"55_2", "55_3", "55_5"}
    assert not states["55_0"].terminal


def test_watch_refreshes_until_every_job_has_finished(tmp_path: Path, capsys) -> None:
    ident = _identity(tmp_path, 0)
    _train(ident, [0.4])
    _consolidate(ident, ended=False)  # running: consolidated once, not ended
    sweep_dir = tmp_path / "scratch" / "sw"
    job = JobRecord(num=0, run_dir=str(ident.run_dir), shared_dir=str(ident.shared_dir))
    write_sweep_record(sweep_dir, SweepRecord(launcher="local", sweep_dir=str(sweep_dir), jobs=[job]))
    finisher = threading.Timer(2.5, _consolidate, args=(ident,))
    finisher.start()
    start = time.monotonic()
    try:
        assert main([str(sweep_dir), "--watch", "1", "--no-plots"]) == 0
    finally:
        finisher.cancel()
    out = capsys.readouterr().out
    assert time.monotonic() - start >= 2.0
    assert "RUNNING" in out and out.rstrip().splitlines()[-1] == "1 job(s): 1 COMPLETED"


def test_learning_curves_are_written_beside_the_results(tmp_path: Path, capsys) -> None:
    main([str(_sweep(tmp_path))])
    out = capsys.readouterr().out
    shared = tmp_path / "shared" / "exp" / "sw"
    for png in (
        shared / "0" / "learning_curves.png",
        shared / "1" / "learning_curves.png",
        shared / "learning_curves.png",
    ):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "2 job plot(s)" in out  # the failed job's curve comes from its scratch metrics.csv
    assert not (shared / "2").exists()  # nothing is created for a job that has not started


def test_trial_states_per_stage_of_an_optuna_search(tmp_path: Path, capsys) -> None:
    sweep_dir = _sweep(tmp_path)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna.journal"))
    )
    s0 = optuna.create_study(study_name="exp-s0", storage=storage, direction="maximize")
    s0.set_user_attr("stage", 0)
    s0.set_user_attr("stage_name", "explore")
    for value, state in ((0.3, "COMPLETE"), (0.5, "COMPLETE"), (0.1, "PRUNED"), (None, "FAIL")):
        trial = s0.ask()
        trial.set_user_attr("job_num", trial.number)
        s0.tell(trial, value if state == "COMPLETE" else None, state=optuna.trial.TrialState[state])
    s0.ask()  # still running
    optuna.create_study(study_name="exp-refit", storage=storage, direction="maximize")
    rows = collect(sweep_dir)
    assert [(s.label, s.counts, s.best) for s in rows.stages] == [
        ("s0 explore", {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1, "RUNNING": 1, "WAITING": 0}, 0.5),
        ("refit", {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}, None),
    ]
    assert [r.trial for r in rows.rows] == ["s0#0 COMPLETE", "s0#1 COMPLETE", "s0#2 PRUNED"]
    main([str(sweep_dir), "--no-plots"])
    out = capsys.readouterr().out
    assert "Optuna search, trials per stage:" in out and "s0 explore  exp-s0" in out


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such sweep directory"
    assert main([str(tmp_path)]) == 2
    assert "no jobs found" in capsys.readouterr().err


def test_stage_best_of_a_multi_objective_study_is_its_pareto_front() -> None:
    import optuna

    from rna_hpc.status.hpo import _best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1 - t.params["x"]), n_trials=4)
    assert _best(study, study.trials) == "4 on the front"
    single = optuna.create_study(direction="maximize")
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert _best(single, single.trials) == max(t.value for t in single.trials)
