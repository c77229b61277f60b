"""What an rna_hpc checkpoint holds about the model, and restoring weights from it.

``checkpoint["rna_hpc"]`` = {"format", "model" (resolved model config), "lora", "trainable_keys"} and, for LoRA
runs, "frozen_sha256": a fingerprint of the frozen base weights the adapters were trained on. A LoRA
checkpoint's state_dict holds the trainable weights only; restoring it checks that the frozen base in
memory (built from ``model.init_from``) is the same one, so adapters never land on another base silently. Which
frozen keys a LoRA checkpoint leaves out is the module's to say (`RestorableModule.frozen_prefixes`).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch
from torch import nn

from rna_hpc.checkpoint.partial_load import partial_load
from rna_hpc.errors import CheckpointError


class RestorableModule(Protocol):
    """What `restore_weights` needs of a module besides ``nn.Module``: its variant and the keys LoRA leaves out."""

    lora_enabled: bool

    def frozen_prefixes(self) -> list[str]:
        """State-dict prefixes whose frozen keys a LoRA checkpoint of this module leaves out."""
        ...


def lora_checkpoint_info(checkpoint: dict) -> dict:
    """The LoRA settings a checkpoint was saved with ({} when unknown)."""
    info = checkpoint.get("rna_hpc") or {}
    return dict(info.get("lora") or {})


def frozen_fingerprint(module: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every parameter that does not require grad."""
    digest = hashlib.sha256()
    for name, p in sorted(module.named_parameters(), key=lambda item: item[0]):
        if p.requires_grad:
            continue
        data = p.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def restore_weights(module: RestorableModule, checkpoint: dict, source: str = "checkpoint") -> None:
    """Load a checkpoint's weights into a module (an RNA3DModule) after checking it matches the module's variant."""
    info = checkpoint.get("rna_hpc")
    if not isinstance(info, dict):
        raise CheckpointError(f"{source}: not an rna_hpc checkpoint (no 'rna_hpc' entry)")
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{source}: no 'state_dict' in the checkpoint")
    saved_lora = bool(lora_checkpoint_info(checkpoint).get("enabled"))
    if saved_lora != module.lora_enabled:
        raise CheckpointError(
            f"{source}: saved with lora.enabled={saved_lora}, but the model has lora.enabled={module.lora_enabled}"
        )
    if not saved_lora:
        partial_load(module, checkpoint["state_dict"])
        return
    if info.get("frozen_sha256") != frozen_fingerprint(module):
        base = (info.get("model") or {}).get("init_from")
        raise CheckpointError(
            f"{source}: the frozen base weights differ from those the LoRA adapters were trained on"
            f" (their base checkpoint: model.init_from={base})"
        )
    partial_load(module, checkpoint["state_dict"], frozen_prefixes_allowed_missing=module.frozen_prefixes())
