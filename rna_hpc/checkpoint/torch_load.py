"""The one way rna_hpc reads a checkpoint: ``torch.load(weights_only=True)``, with one-line errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from rna_hpc.errors import CheckpointError


def safe_torch_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``; anything that needs arbitrary code or is corrupt is a CheckpointError."""
    import torch

    try:
        return torch.load(path, weights_only=True, map_location=map_location)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as e:
        code = _NEEDS_CODE.search(str(e))  # a class or function to import/call, not a malformed stream
        if code:
            what = f" ({code.group(1)})" if code.group(1) else ""
            raise CheckpointError(f"{path}: needs arbitrary code to load{what}; refusing") from e
        raise CheckpointError(f"{path}: unreadable checkpoint ({_unpickling_reason(e)})") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({_first_line(e)})") from e


_NEEDS_CODE = re.compile(r"GLOBAL (\S+)|Can only (?:create new object|build)")


def _unpickling_reason(error: BaseException) -> str:
    found = re.search(r"Unsupported operand \d+|String is too long|persistent\w* id[^.\n]*", str(error))
    return found.group(0) if found else _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
