"""The RNA 3D model: network stages, losses, LightningModule, LoRA and checkpoint loading.

Import the submodules directly (``rna_hpc.model.module``, ``rna_hpc.model.network``); this package
imports nothing heavy on its own.
"""
