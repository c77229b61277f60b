"""The process's global random states (python, numpy, torch, CUDA) in checkpoints, and ``RandomState``, the Lightning
callback that saves them in every checkpoint and restores them when a fit resumes.

Every value is a tensor, an int, a float, a string, None, or a tuple/list/dict of these, so a checkpoint holding it
still loads with ``torch.load(weights_only=True)`` (numpy's state array is stored as a tensor).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning import Callback

from rna_hpc.data.sampler import training_position
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


class RandomState(Callback):
    """Keep the global random states (python, numpy, torch, CUDA) in every checkpoint; restore them on resume.

    They are restored at ``on_train_start``, the last hook before the first batch is fetched, so what Lightning does
    while restoring (building loaders and optimizers) cannot shift the random streams. A checkpoint taken mid-step
    (a signal) holds the states from before the batch in flight, which the restored loop runs again. A single-process
    run resumed this way draws the same numbers as one that never stopped. Every rank restores rank 0's states.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None
        self._at_boundary: dict[str, Any] | None = None  # the states before the current batch was fetched
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = self._at_boundary = None

    def state_dict(self) -> dict[str, Any]:
        if self._trainer is not None and self._at_boundary is not None and training_position(self._trainer)[1]:
            return self._at_boundary
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._loaded:
            set_rng_states(self._loaded)
            self._loaded = None
        self._at_boundary = collect_rng_states()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._at_boundary = collect_rng_states()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._at_boundary = collect_rng_states()
