"""Configuration: dataclass schemas (``schema``), cross-field validation (``validate``), the config tree's location."""

from pathlib import Path

from rna_hpc.config.schema import register_configs
from rna_hpc.config.validate import entry_checks, validate

# The Hydra config tree: conf/ in the repository (an editable install), or rna_hpc/conf inside a wheel (the build
# copies it there). An absolute path keeps `python -m rna_hpc.train` and the console scripts on the same lookup.
_PACKAGED_CONF = Path(__file__).resolve().parents[1] / "conf"
CONFIG_DIR = str(_PACKAGED_CONF if _PACKAGED_CONF.is_dir() else Path(__file__).resolve().parents[2] / "conf")

__all__ = ["CONFIG_DIR", "entry_checks", "register_configs", "validate"]
