"""The process's global random states (python, numpy, torch, CUDA) as a checkpoint-safe dictionary.

Every value is a tensor, an int, a float, a string, None, or a tuple/list/dict of these, so a checkpoint holding it
still loads with ``torch.load(weights_only=True)`` (numpy's state array is stored as a tensor).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from rna_hpc.errors import CheckpointError


def collect_rng_states() -> dict[str, Any]:
    """The current global random states."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos)}
        | {"has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states from :func:`collect_rng_states`; a part that is absent is left as it is."""
    try:
        if "python" in states:
            version, internal, gauss_next = states["python"]
            random.setstate((version, tuple(internal), gauss_next))
        if "numpy" in states:
            n = states["numpy"]
            key = np.asarray(n["key"].numpy() if torch.is_tensor(n["key"]) else n["key"], dtype=np.uint32)
            np.random.set_state((n["kind"], key, int(n["pos"]), int(n["has_gauss"]), float(n["gauss"])))
        if "torch" in states:
            torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"random states in the checkpoint cannot be restored: {err}") from err
