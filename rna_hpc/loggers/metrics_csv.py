"""Reading Lightning's ``metrics.csv``, without Lightning: one row per logging call, a column per metric."""

from __future__ import annotations

import csv
import math
import os

Row = tuple[int, dict[str, float]]  # (step, {metric: value}), empty cells left out


def read_rows(path: str | os.PathLike[str]) -> list[Row]:
    """Every row of a ``metrics.csv`` with a finite step, in file order; an unreadable file gives []."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    rows = []
    for record in records:
        values = {}
        for key, text in record.items():
            try:
                values[key] = float(text)
            except (TypeError, ValueError):
                continue
        step = values.pop("step", math.nan)
        if math.isfinite(step):
            rows.append((int(step), values))
    return rows
