"""``python -m rna_hpc.prepare data=rna3d``: build (or load) the feature cache of ``cfg.data`` and print its report.

``+export_dir=<folder>`` also writes the prepared splits in the Kaggle layout (e.g. the synthetic set, for
``rna_hpc.predict`` and ``rna_hpc.evaluate``). The console script ``rna-hpc-prepare`` is this function; the
pipeline lives in ``rna_hpc.data.prepare``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rna_hpc.cli import user_errors
from rna_hpc.config import CONFIG_DIR, entry_checks, register_configs, validate
from rna_hpc.launch import validated_by

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@validated_by(entry_checks("prepare"))
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate(cfg, "prepare")
        from rna_hpc.data.export import export_split
        from rna_hpc.data.prepare import prepare

        prepared = prepare(cfg.data, cfg.seed)
        print(prepared.report.format())
        if cfg.get("export_dir"):
            for split, samples in (("train", prepared.train), ("val", prepared.val)):
                for path in export_split(samples, cfg.export_dir, split):
                    print(f"wrote {path}")


if __name__ == "__main__":
    main()
