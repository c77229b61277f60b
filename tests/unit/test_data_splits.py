"""Train/val splits (seeded, split file, temporal, Kaggle files), data.fraction, and the prepare entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rna_hpc.data.splits import assign_splits, read_split_file, split_by_seed, split_temporal, subsample
from rna_hpc.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[2]
IDS = [f"T{i:02d}" for i in range(20)]


def test_seeded_split_is_deterministic_and_order_free() -> None:
    a = split_by_seed(IDS, 0.25, seed=3)
    assert a == split_by_seed(list(reversed(IDS)), 0.25, seed=3)
    assert sum(v == "val" for v in a.values()) == 5 and a != split_by_seed(IDS, 0.25, seed=4)
    assert sorted(split_by_seed(["a", "b"], 0.01, seed=0).values()) == ["train", "val"]  # one of each at least


def test_split_file(tmp_path: Path) -> None:
    f = tmp_path / "split.txt"
    f.write_text("# id split\nT00 train\nT01 val  # held out\n\n")
    assert read_split_file(f) == {"T00": "train", "T01": "val"}
    f.write_text("T00 train\nT01 test\n")
    with pytest.raises(InputError, match=r"split\.txt:2: expected '<target_id> train\|val', found 'T01 test'"):
        read_split_file(f)
    samples = [{"target_id": t} for t in ("T00", "T01", "T02")]
    f.write_text("T00 train\nT01 val\n")
    cfg = SimpleNamespace(split_file=str(f))
    assignment, skipped = assign_splits(samples, "split_file", cfg, seed=0)
    assert assignment == {"T00": "train", "T01": "val"} and [s.target_id for s in skipped] == ["T02"]


def test_temporal_split() -> None:
    assignment, skipped = split_temporal({"a": "2020-01-01", "b": "2023-05-01", "c": None}, "2022-06-01")
    assert assignment == {"a": "train", "b": "val"} and [s.target_id for s in skipped] == ["c"]
    with pytest.raises(ConfigError, match=r"data\.temporal_cutoff: 'June' is not a date YYYY-MM-DD"):
        split_temporal({"a": "2020-01-01"}, "June")


def test_files_policy_needs_the_kaggle_layout() -> None:
    with pytest.raises(ConfigError, match=r"data\.split: 'files' needs the Kaggle layout"):
        assign_splits([{"target_id": "a", "split": ""}], "files", SimpleNamespace(), seed=0)


def test_fraction_subsamples_deterministically() -> None:
    half = subsample(IDS, 0.5, seed=1)
    assert half == subsample(IDS, 0.5, seed=1) and len(half) == 10 and half == sorted(half)
    with pytest.raises(ConfigError, match=r"data\.fraction: 0 must be in \(0, 1\]"):
        subsample(IDS, 0, seed=1)


def test_prepare_entry_point_prints_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "mini.yaml").write_text("defaults:\n  - data: synthetic\n  - _self_\nseed: 0\n")
    cmd = [sys.executable, "-m", "rna_hpc.prepare", "--config-dir", str(tmp_path), "--config-name", "mini"]
    cmd += [f"data.cache_dir={tmp_path / 'cache'}", "data.min_length=100"]  # above every synthetic length
    cmd += [f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "error: synthetic: no training targets left after filtering" in proc.stderr
    assert "Traceback" not in proc.stderr
