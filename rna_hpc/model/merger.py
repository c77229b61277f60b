"""Merger: trunk single + torsion features + trunk pair + Stage A pair features -> Stage D conditioning."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rna_hpc.config.schema import MergerConfig
from rna_hpc.model.layers import Transition


class Merger(nn.Module):
    """cond.single = Lin(LN([s, torsions])) + transition; cond.pair = Lin(LN(z)) + Lin(pair_feats)."""

    def __init__(self, cfg: MergerConfig, pair_feat_dim: int) -> None:
        super().__init__()
        self.single_norm = nn.LayerNorm(cfg.single_in)
        self.single_proj = nn.Linear(cfg.single_in, cfg.c_cond)
        self.single_transition = Transition(cfg.c_cond)
        self.pair_norm = nn.LayerNorm(cfg.c_z)
        self.pair_proj = nn.Linear(cfg.c_z, cfg.c_z)
        self.stage_a_proj = nn.Linear(pair_feat_dim, cfg.c_z)

    def forward(self, s: Tensor, torsion: Tensor, z: Tensor, pair_feats: Tensor) -> dict[str, Tensor]:
        """s [B,L,c_s], torsion [B,L,T,2], z [B,L,L,c_z], pair_feats [B,L,L,F] -> {'single', 'pair'}."""
        single = self.single_proj(self.single_norm(torch.cat([s, torsion.flatten(-2)], dim=-1)))
        single = single + self.single_transition(single)
        pair = self.pair_proj(self.pair_norm(z)) + self.stage_a_proj(pair_feats.to(z.dtype))
        return {"single": single, "pair": pair}
