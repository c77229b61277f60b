"""Errors raised by the sweeper: one clean message, also when Hydra's multirun wrapper prints them."""

from __future__ import annotations

from hydra.errors import CompactHydraException

from rna_hpc.errors import ConfigError, RnaHpcError


class SweepConfigError(ConfigError, CompactHydraException):
    """An invalid or incompatible search configuration (Hydra prints the message without a traceback)."""


class SweepError(RnaHpcError, CompactHydraException):
    """A search that cannot go on: too many failed trials, or a stage without a usable trial."""

    exit_code = 1
