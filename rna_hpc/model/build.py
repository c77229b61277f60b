"""Rebuild a trained RNA3DModule from a checkpoint file alone (for predict and evaluation)."""

from __future__ import annotations

from pathlib import Path

from rna_hpc.checkpoint.model_state import restore_weights
from rna_hpc.checkpoint.partial_load import load_checkpoint_file
from rna_hpc.errors import CheckpointError
from rna_hpc.model.module import RNA3DModule


def build_module_from_checkpoint(path: str | Path) -> RNA3DModule:
    """The module described by the checkpoint's stored model/LoRA settings, with its weights, in eval mode.

    A LoRA checkpoint rebuilds its frozen base from the stored ``model.init_from`` and checks its fingerprint.
    """
    ckpt = load_checkpoint_file(path)
    info = ckpt.get("rna_hpc")
    if not isinstance(info, dict) or "model" not in info:
        raise CheckpointError(f"{path}: not an rna_hpc checkpoint (no stored model settings)")
    hparams = ckpt.get("hyper_parameters") or {}
    module = RNA3DModule(
        model=info["model"],
        lora=info.get("lora"),
        loss=hparams.get("loss"),
        optim=hparams.get("optim"),
        objective=hparams.get("objective", "val/tm"),
    )
    restore_weights(module, ckpt, source=str(path))
    return module.eval()
