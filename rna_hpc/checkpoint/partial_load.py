"""The one way weights enter a model: declared partial loading and safe checkpoint reading.

A key may be absent from a checkpoint only when it is frozen and lies under a declared prefix (a LoRA
checkpoint holds only trainable weights; the frozen base comes from its base checkpoint). A missing
trainable key, an unexpected key or a shape mismatch is a CheckpointError naming the key. No key or
shape is ever rewritten to make a load "work".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from rna_hpc.errors import CheckpointError


@dataclass(frozen=True)
class LoadResult:
    """Keys of the module left as they were (declared frozen) and checkpoint keys the module lacks (when allowed)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def partial_load(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    frozen_prefixes_allowed_missing: Sequence[str] = (),
    allow_unexpected: bool = False,
) -> LoadResult:
    """Load ``state_dict`` into ``module``, checking every key against the module first.

    Raises CheckpointError when a key has another shape, a trainable key (``requires_grad``) is missing, a frozen
    key is missing outside ``frozen_prefixes_allowed_missing``, or (unless ``allow_unexpected``) a key is unknown.
    """
    own = module.state_dict()
    unexpected = sorted(k for k in state_dict if k not in own)
    if unexpected and not allow_unexpected:
        raise CheckpointError(
            f"unexpected key {unexpected[0]!r}{_more(unexpected)} in the checkpoint: it was saved from another model"
        )
    for key, value in state_dict.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"shape mismatch for {key!r}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}"
            )
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    missing = sorted(k for k in own if k not in state_dict)
    for key in missing:
        if key in trainable:
            raise CheckpointError(f"trainable key {key!r} is missing from the checkpoint")
        if not any(key.startswith(prefix) for prefix in frozen_prefixes_allowed_missing):
            raise CheckpointError(f"key {key!r} is missing from the checkpoint and is not declared frozen")
    module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return LoadResult(missing=missing, unexpected=unexpected)


def load_checkpoint_file(path: str | Path) -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` on the CPU; anything else is a CheckpointError."""
    from rna_hpc.checkpoint.torch_load import safe_torch_load

    obj = safe_torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dictionary, found {type(obj).__name__}")
    return obj
