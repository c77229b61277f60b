"""How entry points report user errors: one clean message and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rna_hpc.errors import RnaHpcError


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def user_errors() -> Iterator[None]:
    """Print an ``RnaHpcError`` as ``error: ...`` and exit with its code.

    Inside a multirun the error propagates instead, so the launcher records the job as failed and the other
    jobs of the sweep go on.
    """
    try:
        yield
    except RnaHpcError as err:
        if _in_multirun():
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
