"""Shared fixtures: the real data folder, and the composed training config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from predicting import checkpoint, inputs  # noqa: F401  (fixtures: a tiny real checkpoint, validation sequences)

# Tests share 2 cores: one intra-op thread per process (subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def _rna3d_dir() -> Path | None:
    env = os.environ.get("RNA_HPC_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "rna3d")
    for c in candidates:
        if (c / "train_sequences.csv").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def rna3d_dir() -> Path:
    """The real structures folder (RNA_HPC_DATA or ../shared/data/rna3d); a hard failure under CI."""
    path = _rna3d_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("real data not found: set RNA_HPC_DATA or provide ../shared/data/rna3d")
        pytest.skip("real data not found (set RNA_HPC_DATA)")
    return path


@pytest.fixture(scope="session")
def structures_dir(rna3d_dir: Path) -> Path:
    return rna3d_dir / "structures"
