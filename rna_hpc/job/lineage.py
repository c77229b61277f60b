"""Reproducibility: deterministic algorithms on request, and the ``runs.jsonl`` line of each run, prediction and
evaluation (built here, appended by :mod:`rna_hpc.checkpoint.runlog`). Light at import: no torch, no Lightning."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rna_hpc.launch.identity import RunIdentity

log = logging.getLogger(__name__)
CUBLAS_WORKSPACE = ":4096:8"  # the cuBLAS setting that makes its GEMMs reproducible (CUDA >= 10.2)


def apply_determinism(enabled: bool) -> None:
    """``deterministic=true``: deterministic torch algorithms, no cuDNN autotuning, a fixed cuBLAS workspace.

    Seeded data-loader workers come from ``pl.seed_everything(seed, workers=True)``, which every run calls.
    The cuBLAS variable must be set before CUDA initialises, so it is set here, before the Trainer exists.
    """
    if not enabled:
        return
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def runlog_path(identity: RunIdentity) -> Path:
    """``<paths.shared_dir>/<experiment>/runs.jsonl``: the experiment's lineage log."""
    from rna_hpc.checkpoint.runlog import RUNLOG_NAME

    return identity.shared_dir.parents[1] / RUNLOG_NAME


def data_hash(datamodule: Any) -> str | None:
    """The feature-cache key of the prepared data (a sha256 of its settings and input file digests)."""
    prepared = getattr(datamodule, "data", None)
    path = getattr(getattr(prepared, "report", None), "cache_path", None)
    return Path(path).stem if path else None


def log_training_run(cfg: DictConfig, identity: RunIdentity, trainer: Any, datamodule: Any, parameters: str) -> None:
    """Rank 0 appends the run's line (consolidated outputs with their sha256, final metrics) to ``runs.jsonl``."""
    from rna_hpc.checkpoint.manifest import config_hash, read_manifest
    from rna_hpc.checkpoint.runlog import append_record, output_digests, run_record

    manifest = read_manifest(identity.shared_dir) or {}
    outputs = {rel: entry["sha256"] for rel, entry in manifest.get("artifacts", {}).items() if rel.endswith(".ckpt")}
    if not outputs:  # consolidation disabled: the scratch checkpoints
        outputs = output_digests({f"ckpt/{p.name}": p for p in identity.ckpt_dir.glob("*.ckpt")})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    record = run_record(
        "train",
        identity.run_id,
        config_hash=config_hash(OmegaConf.to_container(cfg, resolve=True)),
        data_hash=data_hash(datamodule),
        outputs=outputs,
        metrics=metrics,
        shared_dir=str(identity.shared_dir),
        parameters_sha256=parameters,
    )
    path = append_record(runlog_path(identity), record)
    log.info("logged the run in %s", path)


def log_prediction(cfg: DictConfig, submission: Path) -> Path | None:
    """Append the prediction's line (checkpoint and input digests, submission and PDB digests) to ``runs_log``."""
    from rna_hpc.checkpoint.manifest import config_hash
    from rna_hpc.checkpoint.runlog import append_record, output_digests, run_record

    if not cfg.runs_log:
        return None
    out_dir = submission.parent
    files = {"submission.csv": submission, **{f"pdb/{p.name}": p for p in (out_dir / "pdb").glob("*.pdb")}}
    inputs = output_digests({"ckpt": cfg.ckpt, "input": cfg.input})
    record = run_record(
        "predict",
        str(out_dir),
        config_hash=config_hash(OmegaConf.to_container(cfg, resolve=True)),
        data_hash=inputs["input"],
        outputs=output_digests(files),
        inputs=inputs,
    )
    return append_record(cfg.runs_log, record)


def log_evaluation(cfg: DictConfig, result: dict[str, Any]) -> Path | None:
    """Append the evaluation's line (predictions and labels digests, report digests, mean scores) to ``runs_log``."""
    from rna_hpc.checkpoint.manifest import config_hash
    from rna_hpc.checkpoint.runlog import append_record, output_digests, run_record

    if not cfg.runs_log:
        return None
    out_dir = Path(cfg.out_dir)
    inputs = output_digests({"predictions": cfg.predictions, "labels": cfg.labels})
    metrics = {f"{method}/{key}": value for method, scores in result["mean"].items() for key, value in scores.items()}
    record = run_record(
        "evaluate",
        cfg.run_id or str(out_dir),
        config_hash=config_hash(OmegaConf.to_container(cfg, resolve=True)),
        data_hash=inputs["labels"],
        outputs=output_digests({name: out_dir / name for name in ("evaluation.json", "report.md")}),
        metrics=metrics,
        inputs=inputs,
    )
    return append_record(cfg.runs_log, record)
