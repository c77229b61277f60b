"""The body of a prediction job: candidates per target, ranked, written as PDB files and a Kaggle submission.

Targets are batched in input order and each batch draws from its own seeded generator, so a prediction split into
``shards`` jobs (shard ``k`` takes batches ``k, k + shards, ...``) computes exactly what one job computes. Each shard
writes its PDB files and its part of the submission into ``results_dir``; the shard that finds every part there
(under a file lock) merges them in input order into ``submission.csv`` and writes ``manifest.json`` last.
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from rna_hpc.checkpoint.io import atomic_write, sha256_file
from rna_hpc.checkpoint.manifest import build_manifest, write_manifest
from rna_hpc.config.schema import FoldConfig
from rna_hpc.data.datamodule import RNADataModule
from rna_hpc.data.dataset import collate
from rna_hpc.data.fasta import read_predict_sequences
from rna_hpc.evaluation.ranking import rank_candidates
from rna_hpc.evaluation.structure_io import write_pdb, write_submission
from rna_hpc.job.devices import inference_device
from rna_hpc.model.build import build_module_from_checkpoint
from rna_hpc.model.candidates import batch_sequences, candidate_pools
from rna_hpc.model.settings import typed

log = logging.getLogger(__name__)
SUBMISSION = "submission.csv"


def shard_batches(n_items: int, batch_size: int, shard: int, shards: int) -> list[tuple[int, slice]]:
    """``(batch index, item slice)`` of the batches shard ``shard`` of ``shards`` predicts."""
    starts = range(0, n_items, batch_size)
    return [(b, slice(s, s + batch_size)) for b, s in enumerate(starts) if b % shards == shard]


def load_template_prior(templates_dir: str | None, search: str = "sequence"):  # noqa: ANN201 - TemplatePrior | None
    """Every chain of the folder's train split may serve as a template (nothing is excluded at predict time), found
    by ``search`` (`rna_hpc.evaluation.templates.TemplateIndex.search`)."""
    if not templates_dir:
        return None
    from rna_hpc.evaluation.references import load_templates
    from rna_hpc.model.template_prior import TemplatePrior

    return TemplatePrior(load_templates(templates_dir), exclude_self=False, search=search)


def _pad_to(models: np.ndarray, n: int) -> np.ndarray:
    """Repeat the last structure when fewer than ``n`` candidates exist (the layout needs exactly ``n``)."""
    if len(models) >= n:
        return models
    return np.concatenate([models, np.repeat(models[-1:], n - len(models), axis=0)])


def predict_targets(cfg: DictConfig, out_dir: Path) -> list[tuple[str, str, np.ndarray]]:
    """Predict this shard's targets on the configured device: one PDB file each under ``out_dir/pdb``; the
    submission entries."""
    n, shards = int(cfg.n_predictions), int(cfg.shards)
    sequences = read_predict_sequences(
        cfg.input, cfg.data.max_predict_length, cfg.data.crop_long_predict, cfg.data.unknown_nucleotide
    )
    device = inference_device(str(cfg.trainer.accelerator), torch.cuda.is_available())
    module = build_module_from_checkpoint(cfg.ckpt).to(device)
    log.info("predicting on %s", device)
    templates = load_template_prior(cfg.templates_dir, str(cfg.template_search))
    fold = typed(FoldConfig, cfg.get("fold"), "fold")
    module.net.attach_templates(templates)
    data = RNADataModule(seed=cfg.seed, **{k: v for k, v in cfg.data.items() if k != "_target_"})
    entries = []
    for b, part in shard_batches(len(sequences), int(cfg.batch_size), int(cfg.shard), shards):
        batch = collate(data.predict_samples(sequences[part]))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        generator = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + b)
        pools = candidate_pools(
            module, batch, list(cfg.candidates), n, templates, generator, cfg.seed, str(cfg.ss_ensemble), fold
        )
        for tid, seq, pool in zip(batch["target_id"], batch_sequences(batch), pools, strict=True):
            ranked = rank_candidates(np.stack(pool.coords), pool.names, n, pool.sources)
            models = _pad_to(ranked.coords, n)
            write_pdb(out_dir / "pdb" / f"{tid}.pdb", tid, seq, models)
            entries.append((tid, seq, models))
            log.info("%s: %s (confidence %s)", tid, ", ".join(ranked.names), np.round(ranked.scores, 3).tolist())
    return entries


def predict(cfg: DictConfig) -> Path:
    """Predict (this shard of) ``cfg.input``; the submission path (merged once every shard is done)."""
    if int(cfg.shards) == 1:
        out_dir = Path(cfg.out_dir)
        write_submission(out_dir / SUBMISSION, predict_targets(cfg, out_dir))
        write_results_manifest(cfg, out_dir)
        return out_dir / SUBMISSION
    out_dir = Path(cfg.results_dir)
    entries = predict_targets(cfg, out_dir)
    write_submission(part_path(out_dir, int(cfg.shard), int(cfg.shards)), entries)
    return merge_if_complete(cfg, out_dir)


def part_path(out_dir: Path, shard: int, shards: int) -> Path:
    return out_dir / "shards" / f"part-{shard:05d}-of-{shards:05d}.csv"


@contextmanager
def _merge_lock(out_dir: Path) -> Iterator[None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".merge.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_if_complete(cfg: DictConfig, out_dir: Path) -> Path:
    """Merge the parts into ``submission.csv`` in input order when all are there (one shard does it)."""
    shards, submission = int(cfg.shards), out_dir / SUBMISSION
    parts = [part_path(out_dir, k, shards) for k in range(shards)]
    with _merge_lock(out_dir):
        if submission.is_file() or not all(p.is_file() for p in parts):
            return submission
        order = {tid: i for i, (tid, _) in enumerate(read_predict_sequences(cfg.input, 10**9, True, "mask"))}
        header, rows = None, []
        for part in parts:
            with open(part, newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader)
                rows.extend(reader)
        rows.sort(key=lambda r: (order[r[0].rsplit("_", 1)[0]], int(r[2])))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header, *rows])
        atomic_write(submission, buf.getvalue())
        write_results_manifest(cfg, out_dir)
        log.info("merged %d shards into %s", shards, submission)
    return submission


def write_results_manifest(cfg: DictConfig, out_dir: Path) -> Path:
    """``manifest.json`` of the submission and every PDB file (sha256, size), written last."""
    files = [out_dir / SUBMISSION, *sorted((out_dir / "pdb").glob("*.pdb"))]
    artifacts: dict[str, dict[str, Any]] = {
        str(f.relative_to(out_dir)): {"sha256": sha256_file(f), "size": f.stat().st_size} for f in files
    }
    run_id = f"predict/{Path(str(cfg.ckpt)).name}/{Path(str(cfg.input)).name}"
    return write_manifest(out_dir, build_manifest(run_id, config={"ckpt": cfg.ckpt}, artifacts=artifacts))
