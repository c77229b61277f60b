"""The sliver of the real data the Slurm tests train on (the wiring is under test, not the model)."""

SLIVER = (
    "data=rna3d",
    "data.fraction=0.02",
    "data.max_length=40",
    "data.val_max_length=64",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "hydra.launcher.timeout_min=10",
)
