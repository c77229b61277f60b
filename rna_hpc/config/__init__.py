"""Configuration: dataclass schemas (``schema``), cross-field validation (``validate``), the config tree's location."""

from pathlib import Path

from rna_hpc.config.schema import register_configs
from rna_hpc.config.validate import validate

# The Hydra config tree (conf/ beside the package, in the repository of an editable install). An absolute path keeps
# `python -m rna_hpc.train` and the console scripts on the same file-based lookup.
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

__all__ = ["CONFIG_DIR", "register_configs", "validate"]
