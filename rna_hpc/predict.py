"""``python -m rna_hpc.predict ckpt=<path> input=<fasta or csv>``: PDB files and a Kaggle-layout submission.

Each target gets ``n_predictions`` structures ranked by a confidence score (agreement between the candidates: the
model's diffusion samples, the secondary-structure prior, templates when ``templates_dir`` is set), written as one PDB
file per target (one MODEL per structure) and as ``submission.csv`` (ID,resname,resid,x_1,...,z_5).
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
CANDIDATES = ("model", "ss_model", "helix", "template")


def check_predict_config(cfg: DictConfig) -> None:
    problems = []
    if not Path(cfg.ckpt).is_file():
        problems.append(f"ckpt: no such checkpoint: {cfg.ckpt}")
    if not Path(cfg.input).is_file():
        problems.append(f"input: no such file: {cfg.input}")
    unknown = [c for c in cfg.candidates if c not in CANDIDATES]
    if unknown or not cfg.candidates:
        problems.append(f"candidates: {unknown or '[]'} not in {list(CANDIDATES)}")
    if "template" in cfg.candidates and not cfg.templates_dir:
        problems.append("templates_dir: required when candidates include 'template'")
    if cfg.n_predictions < 1:
        problems.append("n_predictions: must be >= 1")
    if problems:
        raise ConfigError(problems)


def predict(cfg: DictConfig) -> Path:
    """Write PDB files and ``submission.csv`` under ``cfg.out_dir``; return the submission path."""
    import numpy as np
    import torch

    from rna_hpc.data.datamodule import RNADataModule
    from rna_hpc.data.dataset import collate
    from rna_hpc.data.fasta import read_predict_sequences
    from rna_hpc.evaluation.ranking import rank_candidates
    from rna_hpc.model.build import build_module_from_checkpoint
    from rna_hpc.structure_io import write_pdb, write_submission

    out_dir = Path(cfg.out_dir)
    sequences = read_predict_sequences(
        cfg.input, cfg.data.max_predict_length, cfg.data.crop_long_predict, cfg.data.unknown_nucleotide
    )
    module = build_module_from_checkpoint(cfg.ckpt)
    data_fields = {k: v for k, v in cfg.data.items() if k != "_target_"}
    items = RNADataModule(seed=cfg.seed, **data_fields).predict_samples(sequences)
    extra = _extra_candidates(cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    entries = []
    for start in range(0, len(items), cfg.batch_size):
        batch = collate(items[start : start + cfg.batch_size])
        samples = module.predict_coords(batch, n_samples=cfg.n_predictions, generator=generator).numpy()
        for b, tid in enumerate(batch["target_id"]):
            seq = dict(sequences)[tid]
            n = len(seq)
            cands = [s[:n] for s in samples[b]] if "model" in cfg.candidates else []
            names = [f"model_{k}" for k in range(len(cands))]
            for name, fn in extra:
                cands.append(fn(seq))
                names.append(name)
            best, best_names, scores = rank_candidates(np.stack(cands), names, cfg.n_predictions)
            best = _pad_to(best, cfg.n_predictions)
            write_pdb(out_dir / "pdb" / f"{tid}.pdb", tid, seq, best)
            entries.append((tid, seq, best))
            log.info("%s: %s (confidence %s)", tid, ", ".join(best_names), np.round(scores, 3).tolist())
    submission = out_dir / "submission.csv"
    write_submission(submission, entries)
    return submission


def _extra_candidates(cfg: DictConfig) -> list:
    """Non-learned candidates as ``(name, fn(sequence) -> [L, 3])``."""
    from rna_hpc.evaluation.baselines import BaselineContext, helix_baseline, ss_baseline, template_baseline

    context = BaselineContext()
    if "template" in cfg.candidates:
        from rna_hpc.evaluate import load_templates

        context = BaselineContext(templates=load_templates(cfg.templates_dir))
    table = {"ss_model": ss_baseline, "helix": helix_baseline, "template": template_baseline}
    return [(name, lambda s, fn=table[name]: fn(s, context)) for name in cfg.candidates if name in table]


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
