"""A Lightning logger that appends to LanceDB tables on shared storage, so results are queryable across sweeps.

Table ``epochs``: one row per run and validation epoch (run id, sweep, config hash, overrides, metrics).
Table ``targets``: one row per evaluated target (TM-score, RMSD), written by ``rna_hpc.evaluate``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

EPOCHS = pa.schema(
    [
        ("run_id", pa.string()),
        ("sweep", pa.string()),
        ("experiment", pa.string()),
        ("config_hash", pa.string()),
        ("overrides", pa.string()),
        ("epoch", pa.int64()),
        ("step", pa.int64()),
        ("val_tm", pa.float64()),
        ("val_rmsd", pa.float64()),
        ("val_loss", pa.float64()),
        ("train_loss", pa.float64()),
        ("metrics", pa.string()),
        ("time", pa.float64()),
    ]
)
TARGETS = pa.schema(
    [
        ("run_id", pa.string()),
        ("candidate", pa.string()),
        ("target_id", pa.string()),
        ("length", pa.int64()),
        ("tm", pa.float64()),
        ("rmsd", pa.float64()),
        ("time", pa.float64()),
    ]
)


def append_rows(uri: str, table: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> None:
    """Append rows to ``table`` (created on first use); LanceDB commits each append atomically."""
    import lancedb

    db = lancedb.connect(uri)
    data = pa.Table.from_pylist(rows, schema=schema)
    try:
        handle = db.open_table(table)
    except ValueError:  # not there yet
        try:
            db.create_table(table, data=data)
            return
        except ValueError:  # another job created it in the meantime
            handle = db.open_table(table)
    handle.add(data)


class LanceDBLogger(Logger):
    """One ``epochs`` row per validation epoch; rank 0 only (Lightning calls loggers on rank 0)."""

    def __init__(self, uri: str, run_info: Mapping[str, Any] | None = None, name: str = "lancedb") -> None:
        super().__init__()
        self.uri = uri
        self.run_info = dict(run_info or {})
        self._name = name
        self._pending: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return str(self.run_info.get("run_id", "0"))

    @property
    @rank_zero_experiment
    def experiment(self) -> str:
        return self.uri

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyper-parameters travel in the manifest; rows carry the config hash and overrides instead."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._pending.update({k: float(v) for k, v in metrics.items()})
        if not any(k.startswith("val/") for k in metrics):
            return
        m = self._pending
        row = {
            "run_id": str(self.run_info.get("run_id", "")),
            "sweep": str(self.run_info.get("sweep", "")),
            "experiment": str(self.run_info.get("experiment", "")),
            "config_hash": str(self.run_info.get("config_hash", "")),
            "overrides": json.dumps(list(self.run_info.get("overrides", []))),
            "epoch": int(m.get("epoch", -1)),
            "step": int(step if step is not None else -1),
            "val_tm": m.get("val/tm"),
            "val_rmsd": m.get("val/rmsd"),
            "val_loss": m.get("val/loss"),
            "train_loss": m.get("train/loss"),
            "metrics": json.dumps(m, sort_keys=True),
            "time": time.time(),
        }
        append_rows(self.uri, "epochs", EPOCHS, [row])
