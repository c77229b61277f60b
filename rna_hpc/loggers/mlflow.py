"""Lightning's MLflow logger made fit for sweeps on shared storage.

MLflow 3 refuses its file store (``file:<dir>``) unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a file store on
shared storage needs no server, so this logger sets it for ``file:`` URIs. Jobs of one sweep start together and
race to create the experiment: the loser finds the winner's experiment instead of failing.
"""

from __future__ import annotations

import os
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger as _LightningMLFlowLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from rna_hpc import compat
from rna_hpc.loggers.mlflow_store import FILE_STORE_OPT_IN, allow_file_store, ensure_experiment  # noqa: F401


class MLFlowLogger(_LightningMLFlowLogger):
    """``pytorch_lightning.loggers.MLFlowLogger`` with the file-store opt-in and race-free experiment creation."""

    def __init__(self, *args: Any, tracking_uri: str | None = None, **kwargs: Any) -> None:
        allow_file_store(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "file:")
        super().__init__(*args, tracking_uri=tracking_uri, **kwargs)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        compat.choose_mlflow_experiment(self, ensure_experiment)
        return super().experiment
