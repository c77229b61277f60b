"""Configuration: dataclass schemas (``schema``) and cross-field validation (``validate``)."""

from rna_hpc.config.schema import register_configs
from rna_hpc.config.validate import validate

__all__ = ["register_configs", "validate"]
