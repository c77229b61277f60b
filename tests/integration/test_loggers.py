"""Every logger backend of conf/logger, read back from what one real training run (``logger=many``) wrote."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import lancedb
import numpy as np
import pytest
from pytorch_lightning.utilities import rank_zero_only

from rna_hpc.evaluation.pipeline import evaluate
from rna_hpc.evaluation.structure_io import read_coordinate_csv, write_submission
from rna_hpc.geometry import aform_helix
from rna_hpc.loggers.lance import LanceDBLogger
from rna_hpc.loggers.mlflow import allow_file_store, ensure_experiment
from rna_hpc.status.plots import read_metrics

RUN_ID = "default/run/0"  # <experiment>/<run dir name>/<job num>


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny training run with csv, tensorboard, mlflow, wandb (offline) and lancedb all enabled."""
    root = tmp_path_factory.mktemp("loggers")
    run_dir, shared = root / "scratch" / "run", root / "shared"
    env = {
        **os.environ,
        "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"),
        "WANDB_DATA_DIR": str(root / "wandb-data"),
        "HYDRA_FULL_ERROR": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "rna_hpc.train",
        "debug=fast",
        "logger=many",
        "trainer.detect_anomaly=false",
        f"paths.scratch_dir={root / 'scratch'}",
        f"paths.shared_dir={shared}",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"run_dir": run_dir, "shared": shared, "job_shared": shared / "default" / "run" / "0"}


def _val_tm(run: dict[str, Path]) -> float:
    return read_metrics(run["run_dir"] / "csv" / "metrics.csv")["val/tm"][-1][1]


def test_csv_metrics_on_scratch_and_consolidated(run: dict[str, Path]) -> None:
    for root in (run["run_dir"], run["job_shared"]):
        curves = read_metrics(root / "csv" / "metrics.csv")
        assert 0.0 < curves["val/tm"][-1][1] <= 1.0 and curves["epoch"][-1][1] == 0


def test_tensorboard_event_file_holds_the_validation_scalars(run: dict[str, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((run["run_dir"] / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    assert acc.Scalars("val/tm")[-1].value == pytest.approx(_val_tm(run), rel=1e-5)


def test_mlflow_run_in_the_file_store(run: dict[str, Path]) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"file:{run['shared'] / 'mlruns'}"
    allow_file_store(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("default")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["val/tm"] == pytest.approx(_val_tm(run), rel=1e-6)
    params = runs[0].data.params  # the module's hyper-parameters, flattened
    assert params["objective"] == "val/tm" and params["model/name"] == "tiny"


def test_wandb_offline_run_dir(run: dict[str, Path]) -> None:
    offline = list((run["run_dir"] / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert [p.stat().st_size > 0 for p in offline[0].glob("run-*.wandb")] == [True]


def test_lancedb_epochs_rows_are_queryable(run: dict[str, Path]) -> None:
    rows = lancedb.connect(str(run["shared"] / "lancedb")).open_table("epochs").to_pandas()
    mine = rows[rows.run_id == RUN_ID]
    assert len(mine) == 1
    row = mine.iloc[0]
    assert row.sweep == "run" and row.experiment == "default" and len(row.config_hash) == 64
    assert row.val_tm == pytest.approx(_val_tm(run), rel=1e-6) and math.isfinite(row.val_loss)
    assert "debug=fast" in row.overrides


def test_mlflow_experiment_creation_tolerates_an_existing_one(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    allow_file_store(uri)
    client = MlflowClient(uri)
    first = ensure_experiment(client, "sweep")
    assert ensure_experiment(MlflowClient(uri), "sweep") == first


def test_lancedb_logger_writes_on_rank_zero_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = str(tmp_path / "db")
    logger = LanceDBLogger(uri, run_info={"run_id": "e/s/0"})
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger.log_metrics({"val/tm": 0.5, "epoch": 0}, step=3)
    assert not (tmp_path / "db").exists()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    logger.log_metrics({"train/loss": 1.5}, step=2)  # no validation metric: kept for the next row
    logger.log_metrics({"val/tm": 0.5, "epoch": 0}, step=3)
    rows = lancedb.connect(uri).open_table("epochs").to_pandas()
    assert rows[["run_id", "step", "val_tm", "train_loss"]].values.tolist() == [["e/s/0", 3, 0.5, 1.5]]


def test_evaluate_appends_one_targets_row_per_target(tmp_path: Path, rna3d_dir: Path) -> None:
    targets = ["6E8U_B", "7EOJ_A"]
    refs = read_coordinate_csv(rna3d_dir / "val_labels.csv")
    submission = tmp_path / "submission.csv"
    write_submission(submission, [(t, refs[t][0], np.stack([aform_helix(len(refs[t][0]))] * 5)) for t in targets])
    uri = str(tmp_path / "db")
    result = evaluate(submission, rna3d_dir / "val_labels.csv", tmp_path / "eval", n_distance_maps=0, lancedb_uri=uri)
    rows = lancedb.connect(uri).open_table("targets").to_pandas().sort_values("target_id")
    assert rows.target_id.tolist() == targets and set(rows.run_id) == {str(submission)}
    assert rows.tm.tolist() == pytest.approx([t["model"]["tm"] for t in result["targets"]])
    assert rows.length.tolist() == [len(refs[t][0]) for t in targets] and set(rows.candidate) == {"model"}
