"""``python -m rna_hpc.predict ckpt=<path> input=<fasta or csv> [trainer=gpu]``: PDB files and a Kaggle submission.

It computes on ``trainer.accelerator`` (``cpu`` by default; ``gpu``: one GPU per job, in fp32, the sampling noise
drawn from a CPU generator so that the same checkpoint and seed give the same structures on either device).

Each target gets ``n_predictions`` diverse structures ranked by confidence (agreement between candidates of the
sources in ``candidates``: the model's diffusion samples, the secondary-structure prior, templates from the train split
of ``templates_dir``; see `rna_hpc.model.candidates` and `rna_hpc.evaluation.ranking`), written as one PDB file per
target (one MODEL per structure) and as ``submission.csv`` (ID,resname,resid,x_1,...,z_5). A large input is split
over jobs with ``-m shards=<n>`` (``hydra/launcher=slurm`` or ``local``): one array of ``n`` jobs whose parts are
merged into one submission under ``results_dir`` (see `rna_hpc.job.predict`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rna_hpc.cli import user_errors
from rna_hpc.config import CONFIG_DIR, entry_checks, register_configs, validate
from rna_hpc.job.lineage import log_prediction
from rna_hpc.launch import validated_by

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@validated_by(entry_checks("predict"))
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate(cfg, "predict")
        from rna_hpc.job.predict import predict

        submission = predict(cfg)
        if submission.is_file():  # a shard whose parts are not all in yet has nothing to log
            log_prediction(cfg, submission)
        print(f"predictions: {submission.parent / 'pdb'}/*.pdb\nsubmission:  {submission}")


if __name__ == "__main__":
    main()
