"""``AtomicCheckpointIO``: Lightning's checkpoint plugin with atomic saves, sha256 sidecars and safe loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from rna_hpc.checkpoint.io import (
    atomic_writer,
    remove_checkpoint,
    remove_file,
    secure_mkdir,
    sidecar_path,
    write_sidecar,
)
from rna_hpc.checkpoint.torch_load import safe_torch_load


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save: temp file + fsync + rename, then the ``.sha256`` sidecar; load: always ``weights_only=True``.

    Pass it as ``Trainer(plugins=[AtomicCheckpointIO()])``; ``saves`` counts the checkpoints written by this process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        import torch

        path = Path(path)
        secure_mkdir(path.parent)
        remove_file(sidecar_path(path))  # the old sidecar must not vouch for the new content
        with atomic_writer(path) as out:
            torch.save(checkpoint, out)
        write_sidecar(path, out.sha256)
        self.saves += 1

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        """Load with ``weights_only=True`` whatever ``weights_only`` asks: checkpoints never run code."""
        return safe_torch_load(path, map_location="cpu" if map_location is None else map_location)

    def remove_checkpoint(self, path: Any) -> None:
        remove_checkpoint(path)
