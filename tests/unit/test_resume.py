"""Choosing the resume checkpoint (scratch, then shared; skip invalid ones) and the config-change check."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from rna_hpc.checkpoint.consolidate import collect_artifacts, consolidate
from rna_hpc.checkpoint.io import sidecar_path
from rna_hpc.checkpoint.lightning_io import AtomicCheckpointIO
from rna_hpc.errors import ConfigError
from rna_hpc.job.resume import check_config_compatible, find_resume_checkpoint

NOW = 1_700_000_000


def _save(path: Path, step: int, age_s: int) -> Path:
    """A real checkpoint written by the plugin (atomic + sidecar), dated ``age_s`` seconds ago."""
    checkpoint = {"state_dict": {"w": torch.full((3,), float(step))}, "global_step": step}
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path]:
    run_dir, shared_dir = tmp_path / "scratch" / "run", tmp_path / "shared" / "run"
    _save(run_dir / "ckpt" / "step-2.ckpt", 2, age_s=30)
    _save(run_dir / "ckpt" / "step-4.ckpt", 4, age_s=20)
    consolidate(run_dir, shared_dir, files=collect_artifacts(run_dir), manifest_fields={})
    _save(run_dir / "ckpt" / "last.ckpt", 6, age_s=10)  # newer than anything consolidated
    return run_dir, shared_dir


def test_scratch_comes_first(run: tuple[Path, Path]) -> None:
    run_dir, shared_dir = run
    assert find_resume_checkpoint(run_dir, shared_dir) == run_dir / "ckpt" / "last.ckpt"
    assert find_resume_checkpoint(run_dir / "ckpt", shared_dir) == run_dir / "ckpt" / "last.ckpt"


def test_shared_copy_is_used_when_scratch_was_wiped(run: tuple[Path, Path]) -> None:
    run_dir, shared_dir = run
    shutil.rmtree(run_dir)
    assert find_resume_checkpoint(run_dir, shared_dir) == shared_dir / "ckpt" / "step-4.ckpt"
    assert find_resume_checkpoint(run_dir, shared_dir.parent / "nothing") is None


def test_truncated_newest_checkpoint_is_skipped_with_a_warning(run: tuple[Path, Path], caplog) -> None:
    run_dir, shared_dir = run
    last = run_dir / "ckpt" / "last.ckpt"
    with open(last, "r+b") as f:
        f.truncate(last.stat().st_size // 2)
    os.utime(last, (NOW - 10, NOW - 10))
    with caplog.at_level(logging.WARNING, logger="rna_hpc.job.resume"):
        assert find_resume_checkpoint(run_dir, shared_dir) == run_dir / "ckpt" / "step-4.ckpt"
    assert caplog.messages == [f"skipping checkpoint {last}: sha256 differs from its sidecar (truncated or changed)"]


def test_checkpoints_that_fail_any_check_are_skipped_in_turn(run: tuple[Path, Path], caplog) -> None:
    run_dir, shared_dir = run
    ckpt = run_dir / "ckpt"
    sidecar_path(ckpt / "last.ckpt").unlink()  # never completed
    data = bytearray((ckpt / "step-4.ckpt").read_bytes())
    data[-40] ^= 0xFF  # same size, changed content
    (ckpt / "step-4.ckpt").write_bytes(bytes(data))
    os.utime(ckpt / "step-4.ckpt", (NOW - 20, NOW - 20))
    (ckpt / "step-2.ckpt").write_bytes(b"garbage")
    os.utime(ckpt / "step-2.ckpt", (NOW - 30, NOW - 30))
    sidecar_path(ckpt / "step-2.ckpt").write_text(f"{hashlib.sha256(b'garbage').hexdigest()}  step-2.ckpt\n")
    with caplog.at_level(logging.WARNING, logger="rna_hpc.job.resume"):
        found = find_resume_checkpoint(run_dir, shared_dir)
    assert found == shared_dir / "ckpt" / "step-4.ckpt"
    assert [m.split(":")[0] for m in caplog.messages] == [
        f"skipping checkpoint {ckpt / 'last.ckpt'}",
        f"skipping checkpoint {ckpt / 'step-4.ckpt'}",
        f"skipping checkpoint {ckpt / 'step-2.ckpt'}",
    ]
    assert caplog.messages[2].endswith("step-2.ckpt: unreadable checkpoint (Unsupported operand 103)")


def test_shared_copy_must_match_the_manifest(run: tuple[Path, Path], caplog) -> None:
    run_dir, shared_dir = run
    shutil.rmtree(run_dir)
    newest = shared_dir / "ckpt" / "step-4.ckpt"
    newest.write_bytes(newest.read_bytes()[:100])
    os.utime(newest, (NOW - 20, NOW - 20))
    with caplog.at_level(logging.WARNING, logger="rna_hpc.job.resume"):
        assert find_resume_checkpoint(run_dir, shared_dir) == shared_dir / "ckpt" / "step-2.ckpt"
    assert caplog.messages == [f"skipping checkpoint {newest}: sha256 differs from its manifest (truncated or changed)"]


SAVED = {
    "model": {"trunk": {"c_s": 64, "c_z": 32}, "init_from": None, "name": "tiny"},
    "lora": {"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
}


def _current(**changes: object) -> dict:
    current = {"model": dict(SAVED["model"], trunk=dict(SAVED["model"]["trunk"])), "lora": dict(SAVED["lora"])}
    for key, value in changes.items():
        section, *path = key.split("__")
        node = current[section]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return current


def test_config_change_refusal_names_the_fields() -> None:
    changed = _current(model__trunk__c_s=128, lora__r=8, lora__target_modules=["q_proj"])
    with pytest.raises(ConfigError) as err:
        check_config_compatible(SAVED, changed, "auto")
    assert err.value.problems[:3] == [
        "lora.r: checkpoint 4, config 8",
        "lora.target_modules: checkpoint ['q_proj', 'v_proj'], config ['q_proj']",
        "model.trunk.c_s: checkpoint 64, config 128",
    ]
    assert "resume=ignore_config_change" in str(err.value)


def test_config_changes_that_keep_shapes_or_are_accepted(caplog) -> None:
    check_config_compatible(SAVED, _current(lora__alpha=16, model__init_from="base.ckpt"), "auto")
    check_config_compatible({}, _current(), "auto")  # a checkpoint without a saved config
    with caplog.at_level(logging.WARNING, logger="rna_hpc.job.resume"):
        check_config_compatible(SAVED, _current(model__trunk__c_z=8), "ignore_config_change")
    assert "model.trunk.c_z: checkpoint 32, config 8" in caplog.text
    with pytest.raises(ConfigError, match="resume: 'sometimes' is not one of auto, never, ignore_config_change"):
        check_config_compatible(SAVED, SAVED, "sometimes")


def test_a_changed_featurizer_is_refused_from_what_the_checkpoint_stores(tmp_path) -> None:
    """The checkpoint stores every subtree resume compares (``SHAPE_SUBTREES``): data.featurizer too."""
    from hydra import compose, initialize_config_dir

    from rna_hpc.config import CONFIG_DIR
    from rna_hpc.job.resume import SHAPE_SUBTREES, shape_config
    from rna_hpc.job.run import build_module

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny"])
        changed = compose("train", overrides=["model=tiny", "data.featurizer.temperature=25.0"])
    checkpoint = {"state_dict": {}}
    build_module(cfg).on_save_checkpoint(checkpoint)
    stored = checkpoint["rna_hpc"]
    assert {k.split(".")[0] for k in SHAPE_SUBTREES} <= set(stored)
    assert stored["data"]["featurizer"] == shape_config(cfg)["data"]["featurizer"]
    check_config_compatible(stored, shape_config(cfg), "auto")  # the same config resumes
    with pytest.raises(ConfigError, match=r"data\.featurizer\.temperature: checkpoint 37\.0, config 25\.0"):
        check_config_compatible(stored, shape_config(changed), "auto")
