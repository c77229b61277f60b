"""Heads on the trunk: virtual C1' torsions (residual around the A-form helix) and the distogram."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rna_hpc.config.schema import HeadsConfig
from rna_hpc.model.coords import aform_torsions
from rna_hpc.model.layers import zero_init


class TorsionHead(nn.Module):
    """Per residue: virtual bond angle and dihedral as (sin, cos), predicted as a change from the A-form values.

    The last layer starts at zero, so an untrained head outputs the ideal A-form helix.
    """

    def __init__(self, c_s: int, n_torsions: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c_s)
        self.hidden = nn.Linear(c_s, c_s)
        self.delta = zero_init(nn.Linear(c_s, n_torsions))
        self.register_buffer("prior", aform_torsions()[:n_torsions], persistent=False)

    def forward(self, s: Tensor) -> Tensor:
        """s [B,L,c_s] -> [B,L,n_torsions,2] as (sin, cos)."""
        angle = self.prior + self.delta(torch.relu(self.hidden(self.norm(s))))
        return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)


class DistogramHead(nn.Module):
    """Symmetrised pair -> logits over distance bins; ``bin_edges`` (bins - 1 values) splits [min, max]."""

    def __init__(self, c_z: int, bins: int, d_min: float, d_max: float) -> None:
        super().__init__()
        self.proj = nn.Linear(c_z, bins)
        self.register_buffer("bin_edges", torch.linspace(d_min, d_max, bins - 1), persistent=False)

    def forward(self, z: Tensor) -> Tensor:
        return self.proj(0.5 * (z + z.transpose(1, 2)))

    def bin_of(self, distances: Tensor) -> Tensor:
        """The class index of each distance."""
        return torch.bucketize(distances.contiguous(), self.bin_edges)


class Heads(nn.Module):
    """Torsion and distogram heads."""

    def __init__(self, cfg: HeadsConfig) -> None:
        super().__init__()
        self.torsion = TorsionHead(cfg.c_s, cfg.n_torsions)
        self.distogram = DistogramHead(cfg.c_z, cfg.distogram_bins, cfg.distogram_min, cfg.distogram_max)

    def forward(self, s: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.torsion(s), self.distogram(z)
