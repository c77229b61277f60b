"""What every benchmark script shares: the repository root and the default data folder.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and ``import common`` works.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$RNA_HPC_DATA``, else ``../shared/data/rna3d`` next to the repository."""
    return Path(os.environ.get("RNA_HPC_DATA") or REPO.parent / "shared" / "data" / "rna3d")
