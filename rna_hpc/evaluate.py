"""Score a submission CSV against reference structures, next to the helix, secondary-structure and template baselines.

    python -m rna_hpc.evaluate predictions=submission.csv labels=<data>/val_labels.csv [templates_dir=<data>]
        [lancedb_uri=<dir> run_id=<name>]

Prints a per-target table (TM-score best of the samples, RMSD) and writes `evaluation.json` and `report.md`
with its figures to `out_dir`. The console script ``rna-hpc-evaluate`` is this function; the pipeline lives in
``rna_hpc.evaluation.pipeline``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rna_hpc.cli import user_errors
from rna_hpc.config import CONFIG_DIR, entry_checks, validate
from rna_hpc.job.lineage import log_evaluation
from rna_hpc.launch import validated_by


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@validated_by(entry_checks("evaluate"))
def main(cfg: DictConfig) -> float:
    """Entry point: `python -m rna_hpc.evaluate predictions=... labels=...`; returns the model's mean TM-score."""
    with user_errors():
        validate(cfg, "evaluate")
        from rna_hpc.evaluation.pipeline import evaluate

        result = evaluate(
            cfg.predictions,
            cfg.labels,
            cfg.out_dir,
            templates_dir=cfg.templates_dir,
            aligned_tm=cfg.aligned_tm,
            n_distance_maps=cfg.n_distance_maps,
            lancedb_uri=cfg.get("lancedb_uri"),
            run_id=cfg.get("run_id"),
        )
        log_evaluation(cfg, result)
    return result["mean"]["model"]["tm"]


if __name__ == "__main__":
    main()
