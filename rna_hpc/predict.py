"""``python -m rna_hpc.predict ckpt=<path> input=<fasta or csv>``: PDB files and a Kaggle-layout submission.

Each target gets ``n_predictions`` diverse structures ranked by confidence (agreement between candidates of the
sources in ``candidates``: the model's diffusion samples, the secondary-structure prior, templates from the train split
of ``templates_dir``; see `rna_hpc.model.candidates` and `rna_hpc.evaluation.ranking`), written as one PDB file per
target (one MODEL per structure) and as ``submission.csv`` (ID,resname,resid,x_1,...,z_5).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rna_hpc.cli import user_errors
from rna_hpc.config import CONFIG_DIR, register_configs
from rna_hpc.errors import ConfigError

register_configs()
log = logging.getLogger(__name__)


def check_predict_config(cfg: DictConfig) -> None:
    from rna_hpc.model.candidates import NEEDS_TEMPLATES, SOURCES

    problems = []
    if not Path(cfg.ckpt).is_file():
        problems.append(f"ckpt: no such checkpoint: {cfg.ckpt}")
    if not Path(cfg.input).is_file():
        problems.append(f"input: no such file: {cfg.input}")
    unknown = [c for c in cfg.candidates if c not in SOURCES]
    if unknown or not cfg.candidates:
        problems.append(f"candidates: {unknown or '[]'} not in {list(SOURCES)}")
    needs = [c for c in cfg.candidates if c in NEEDS_TEMPLATES]
    if needs and not cfg.templates_dir:
        problems.append(f"templates_dir: required when candidates include {', '.join(needs)}")
    if cfg.templates_dir and not Path(cfg.templates_dir, "train_labels.csv").is_file():
        problems.append(f"templates_dir: no train_labels.csv in {cfg.templates_dir}")
    from rna_hpc.evaluation.baselines import ENSEMBLES

    if cfg.ss_ensemble not in ENSEMBLES:
        problems.append(f"ss_ensemble: {cfg.ss_ensemble!r} is not one of {', '.join(ENSEMBLES)}")
    if cfg.n_predictions < 1:
        problems.append("n_predictions: must be >= 1")
    if problems:
        raise ConfigError(problems)


def load_template_prior(templates_dir: str | None):  # noqa: ANN201 - TemplatePrior | None
    """Every chain of the folder's train split may serve as a template (nothing is excluded at predict time)."""
    if not templates_dir:
        return None
    from rna_hpc.evaluate import load_templates
    from rna_hpc.model.template_prior import TemplatePrior

    return TemplatePrior(load_templates(templates_dir), exclude_self=False)


def predict(cfg: DictConfig) -> Path:
    """Write PDB files and ``submission.csv`` under ``cfg.out_dir``; return the submission path."""
    import numpy as np
    import torch

    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.data.dataset import collate
    from rna_hpc.data.fasta import read_predict_sequences
    from rna_hpc.evaluation.ranking import rank_candidates
    from rna_hpc.model.build import build_module_from_checkpoint
    from rna_hpc.model.candidates import batch_sequences, candidate_pools
    from rna_hpc.structure_io import write_pdb, write_submission

    out_dir, n = Path(cfg.out_dir), int(cfg.n_predictions)
    sequences = read_predict_sequences(
        cfg.input, cfg.data.max_predict_length, cfg.data.crop_long_predict, cfg.data.unknown_nucleotide
    )
    module = build_module_from_checkpoint(cfg.ckpt)
    templates = load_template_prior(cfg.templates_dir)
    module.net.attach_templates(templates)
    data_fields = {k: v for k, v in cfg.data.items() if k != "_target_"}
    items = RNADataModule(seed=cfg.seed, **data_fields).predict_samples(sequences)
    generator = torch.Generator().manual_seed(cfg.seed)
    entries = []
    for start in range(0, len(items), cfg.batch_size):
        batch = collate(items[start : start + cfg.batch_size])
        pools = candidate_pools(
            module, batch, list(cfg.candidates), n, templates, generator, cfg.seed, str(cfg.ss_ensemble)
        )
        for tid, seq, pool in zip(batch["target_id"], batch_sequences(batch), pools, strict=True):
            ranked = rank_candidates(np.stack(pool.coords), pool.names, n, pool.sources)
            models = _pad_to(ranked.coords, n)
            write_pdb(out_dir / "pdb" / f"{tid}.pdb", tid, seq, models)
            entries.append((tid, seq, models))
            log.info("%s: %s (confidence %s)", tid, ", ".join(ranked.names), np.round(ranked.scores, 3).tolist())
    submission = out_dir / "submission.csv"
    write_submission(submission, entries)
    return submission


def _pad_to(models, n: int):  # noqa: ANN001, ANN202
    """Repeat the last structure when fewer than ``n`` candidates exist (the layout needs exactly ``n``)."""
    import numpy as np

    if len(models) >= n:
        return models
    return np.concatenate([models, np.repeat(models[-1:], n - len(models), axis=0)])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    with user_errors():
        check_predict_config(cfg)
        submission = predict(cfg)
        print(f"predictions: {submission.parent / 'pdb'}/*.pdb\nsubmission:  {submission}")


if __name__ == "__main__":
    main()
