"""Lightning's CSV logger for runs that resume: a requeued job keeps the curve of its earlier attempts.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a resumed fit would keep only the steps
after its resume point (and a job requeued after its last step, none at all). This logger reads the file when it is
built (its own, else ``earlier``: the shared copy, where scratch was wiped), and :meth:`CSVLogger.keep_earlier` logs
those rows before the resumed step again, before the new ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger
from pytorch_lightning.utilities import rank_zero_only

from rna_hpc.loggers.metrics_csv import read_rows


class CSVLogger(_LightningCSVLogger):
    """``pytorch_lightning.loggers.CSVLogger`` that can keep the rows an earlier attempt of the run wrote."""

    def __init__(self, *args: Any, earlier: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        own = Path(self.log_dir) / "metrics.csv"
        source = own if own.is_file() else Path(earlier) if earlier else None
        self._earlier = read_rows(source) if source is not None else []

    @rank_zero_only
    def keep_earlier(self, step: int | None) -> None:
        """Log the earlier attempts' rows before ``step`` again; None (a fresh fit): none.

        ``step`` is the resumed checkpoint's ``global_step``: Lightning logs the n-th optimizer step, and a validation
        after it, at step n - 1, so the rows from ``step`` on are those the resumed fit trains again.
        """
        rows, self._earlier = self._earlier, []
        for row_step, values in rows:
            if step is not None and row_step < step and values:
                self.log_metrics(values, step=row_step)
