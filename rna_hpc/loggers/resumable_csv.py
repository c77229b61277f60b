"""Lightning's CSV logger for runs that resume: a requeued job keeps the curve of its earlier attempts.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a resumed fit would keep only the steps
after its resume point (and a job requeued after its last step, none at all). This logger reads the file when it is
built (its own, else ``earlier``: the shared copy, where scratch was wiped), and :meth:`CSVLogger.keep_earlier` logs
those rows before the resumed step again, before the new ones.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger
from pytorch_lightning.utilities import rank_zero_only

from rna_hpc.loggers.metrics_csv import read_rows

log = logging.getLogger(__name__)


class CSVLogger(_LightningCSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` that can keep the rows an earlier attempt of the run wrote."""

    def __init__(self, *args: Any, earlier: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        own = Path(self.log_dir) / "metrics.csv"
        source = own if own.is_file() else Path(earlier) if earlier else None
        self._earlier = read_rows(source) if source is not None else []

    @property
    def experiment(self) -> Any:
        """Lightning's writer, built without its warning that the ``metrics.csv`` found will be deleted: its rows
        were read when this logger was built, and :meth:`keep_earlier` says what becomes of them (and clears them)."""
        if self._earlier:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
                return super().experiment
        return super().experiment

    @rank_zero_only
    def keep_earlier(self, step: int | None) -> None:
        """Log the earlier attempts' rows before ``step`` again; None (a fresh fit): none.

        ``step`` is the resumed checkpoint's ``global_step``: Lightning logs the n-th optimizer step, and a validation
        after it, at step n - 1, so the rows from ``step`` on are those the resumed fit trains again.
        """
        rows, self._earlier = self._earlier, []
        if rows and step is None:
            log.info("a fresh fit: %s starts a new curve (%d earlier rows dropped)", self.log_dir, len(rows))
        for row_step, values in rows:
            if step is not None and row_step < step and values:
                self.log_metrics(values, step=row_step)
