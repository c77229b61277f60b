"""``python -m rna_hpc.train``: validate the composed config, run one training job, return its objective.

The console script ``rna-hpc-train`` points here, so ``-m``, ``--cfg``, group overrides and tab completion behave as
with ``python -m``. Importing this module does not import torch or Lightning: composing and submitting a sweep stays
light, and the job imports them when it runs.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rna_hpc.cli import user_errors
from rna_hpc.config import CONFIG_DIR, entry_checks, register_configs, validate
from rna_hpc.launch import validated_by

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@validated_by(entry_checks("train"))
def main(cfg: DictConfig) -> float | list[float] | None:
    """Train one model; the returned float (one per objective name) is what a Hydra sweeper optimises (rank 0's)."""
    with user_errors():
        validate(cfg, "train")
        from rna_hpc.job.run import run_training

        return run_training(cfg)


if __name__ == "__main__":
    main()
