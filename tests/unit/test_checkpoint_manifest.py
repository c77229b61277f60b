"""Manifest fields, config hash, verification, and the redaction applied to what manifests and logs contain."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rna_hpc.checkpoint.io import sha256_file
from rna_hpc.checkpoint.manifest import (
    build_manifest,
    config_hash,
    git_state,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from rna_hpc.checkpoint.redact import MASK, RedactingFilter, redact, redact_text
from rna_hpc.launch.env import JobContext

CONFIG = {
    "experiment_name": "demo",
    "model": {"trunk": {"c_s": 32, "c_z": 16}},
    "logger": {"wandb": {"enabled": True, "api_key": "abc123"}, "mlflow": {"tracking_token": None}},
}


def test_config_hash_is_canonical() -> None:
    reordered = {"model": {"trunk": {"c_z": 16, "c_s": 32}}, "logger": CONFIG["logger"], "experiment_name": "demo"}
    assert config_hash(CONFIG) == config_hash(reordered) == config_hash(OmegaConf.create(CONFIG))
    changed = json.loads(json.dumps(CONFIG))
    changed["model"]["trunk"]["c_s"] = 64
    assert config_hash(changed) != config_hash(CONFIG)
    assert len(config_hash(CONFIG)) == 64


def test_build_manifest_records_run_job_versions_and_metrics() -> None:
    job = JobContext(job_id="41_3", array_job_id="41", array_task_id="3", restart_count=2, node_list="node[1-2]")
    manifest = build_manifest(
        "demo/sweep-1/3",
        config=CONFIG,
        job=job,
        started_at="2025-01-01T00:00:00+00:00",
        metrics={"val/tm": torch.tensor(0.25), "train/loss": float("nan")},
        artifacts={"ckpt/last.ckpt": {"sha256": "0" * 64, "size": 3}},
    )
    assert manifest["run_id"] == "demo/sweep-1/3"
    assert manifest["config_hash"] == config_hash(CONFIG)  # hash of the real config, stored redacted
    assert manifest["config"]["logger"]["wandb"]["api_key"] == MASK
    assert manifest["config"]["model"] == CONFIG["model"]
    assert manifest["slurm"] == {
        "job_id": "41_3",
        "array_job_id": "41",
        "array_task_id": "3",
        "node_list": "node[1-2]",
        "restart_count": 2,
        "world_size": 1,
        "num_nodes": 1,
    }
    assert manifest["metrics"] == {"train/loss": None, "val/tm": 0.25}
    assert manifest["started_at"] == "2025-01-01T00:00:00+00:00" and manifest["ended_at"] is None
    assert set(manifest["versions"]) == {"torch", "pytorch_lightning", "hydra", "submitit", "optuna", "peft", "rna_hpc"}
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["versions"]["rna_hpc"] == "0.1.0"
    assert set(manifest["git"]) == {"revision", "dirty"}
    json.dumps(manifest, allow_nan=False)


def test_git_state_reads_the_package_checkout() -> None:
    state = git_state()
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        assert len(state["revision"]) == 40 and isinstance(state["dirty"], bool)
    else:
        assert state == {"revision": None, "dirty": None}


def _result_dir(tmp_path: Path) -> Path:
    result = tmp_path / "shared"
    (result / "ckpt").mkdir(parents=True)
    (result / "ckpt" / "last.ckpt").write_bytes(os.urandom(1000))
    (result / "metrics.csv").write_text("step,loss\n1,0.5\n")
    artifacts = {
        rel: {"sha256": sha256_file(result / rel), "size": (result / rel).stat().st_size}
        for rel in ("ckpt/last.ckpt", "metrics.csv")
    }
    write_manifest(result, build_manifest("demo/s/0", artifacts=artifacts))
    return result


def test_verify_manifest_accepts_an_intact_directory(tmp_path: Path) -> None:
    result = _result_dir(tmp_path)
    assert verify_manifest(result) == []
    assert read_manifest(result)["artifacts"]["metrics.csv"]["size"] == 16


def test_verify_manifest_names_every_problem(tmp_path: Path) -> None:
    result = _result_dir(tmp_path)
    data = bytearray((result / "ckpt" / "last.ckpt").read_bytes())
    data[10] ^= 0xFF
    (result / "ckpt" / "last.ckpt").write_bytes(bytes(data))  # same size, other content
    (result / "metrics.csv").unlink()
    problems = verify_manifest(result)
    assert problems == [
        f"{result / 'ckpt' / 'last.ckpt'}: sha256 differs from the manifest",
        f"{result / 'metrics.csv'}: missing",
    ]
    (result / "metrics.csv").write_text("step\n")
    assert "size 5 bytes, the manifest records 16" in verify_manifest(result)[1]


def test_verify_manifest_rejects_missing_unreadable_and_unsafe(tmp_path: Path) -> None:
    assert verify_manifest(tmp_path) == [f"{tmp_path / 'manifest.json'}: missing"]
    (tmp_path / "manifest.json").write_text("{not json")
    assert verify_manifest(tmp_path) == [f"{tmp_path / 'manifest.json'}: unreadable"]
    write_manifest(tmp_path, {"artifacts": {"../outside.ckpt": {"sha256": "0" * 64, "size": 1}}})
    assert verify_manifest(tmp_path) == ["../outside.ckpt: path leaves the result directory"]


def test_redact_masks_credentials_in_configs_envs_and_overrides() -> None:
    env = {"WANDB_API_KEY": "k1", "AWS_SECRET_ACCESS_KEY": "k2", "HF_TOKEN": "k3", "DB_PASSWORD": "", "HOME": "/h"}
    assert redact(env) == {
        "WANDB_API_KEY": MASK,
        "AWS_SECRET_ACCESS_KEY": MASK,
        "HF_TOKEN": MASK,
        "DB_PASSWORD": MASK,
        "HOME": "/h",
    }
    config = redact(OmegaConf.create(CONFIG))
    assert config["logger"]["wandb"] == {"enabled": True, "api_key": MASK}
    assert config["logger"]["mlflow"] == {"tracking_token": None}  # nothing to hide
    assert config["model"] == CONFIG["model"]
    overrides = ["lr=0.01", "+logger.wandb.api_key=abc", "trainer.devices=2"]
    assert redact(overrides) == ["lr=0.01", f"+logger.wandb.api_key={MASK}", "trainer.devices=2"]
    assert redact(("x", {"Secret": 1})) == ("x", {"Secret": MASK})
    assert CONFIG["logger"]["wandb"]["api_key"] == "abc123"  # the input is not modified


def test_redact_text_and_log_filter(caplog) -> None:
    assert redact_text("run with WANDB_API_KEY=abc --token 'x' password='p w' lr=1") == (
        f"run with WANDB_API_KEY={MASK} --token 'x' password={MASK} lr=1"
    )
    logger = logging.getLogger("rna_hpc.test_redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="rna_hpc.test_redact"):
        logger.info("environment: %s", "HF_TOKEN=hf_123 PATH=/bin")
    assert caplog.messages == [f"environment: HF_TOKEN={MASK} PATH=/bin"]
