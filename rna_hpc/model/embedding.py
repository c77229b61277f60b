"""Input embedding: sequence, relative position and Stage A pair features -> initial single and pair."""

from __future__ import annotations

from torch import Tensor, nn

from rna_hpc.config.schema import TrunkConfig
from rna_hpc.errors import InputError

N_TOKENS = 5  # A, C, G, U, N/padding


class InputEmbedding(nn.Module):
    """s0 = Emb(seq); z0 = Lin(s0)_i + Lin(s0)_j + RelPos(j - i) + Lin(pair_feats)."""

    def __init__(self, cfg: TrunkConfig) -> None:
        super().__init__()
        self.relpos_max = cfg.relpos_max
        self.pair_feat_dim = cfg.pair_feat_dim
        self.seq_embed = nn.Embedding(N_TOKENS, cfg.c_s)
        self.left = nn.Linear(cfg.c_s, cfg.c_z, bias=False)
        self.right = nn.Linear(cfg.c_s, cfg.c_z, bias=False)
        self.relpos = nn.Embedding(2 * cfg.relpos_max + 1, cfg.c_z)
        self.pair_feat_proj = nn.Linear(cfg.pair_feat_dim, cfg.c_z)

    def forward(self, seq: Tensor, residue_index: Tensor, pair_feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """seq, residue_index [B,L] long; pair_feats [B,L,L,F]; mask [B,L] -> s [B,L,c_s], z [B,L,L,c_z]."""
        if pair_feats.shape[-1] != self.pair_feat_dim:
            raise InputError(
                f"batch['pair_feats']: {pair_feats.shape[-1]} channels, "
                f"model.trunk.pair_feat_dim is {self.pair_feat_dim}"
            )
        s = self.seq_embed(seq.clamp(0, N_TOKENS - 1)) * mask.unsqueeze(-1)
        offset = (residue_index.unsqueeze(1) - residue_index.unsqueeze(2)).clamp(-self.relpos_max, self.relpos_max)
        pair_mask = (mask.unsqueeze(1) & mask.unsqueeze(2)).unsqueeze(-1)
        z = self.left(s).unsqueeze(2) + self.right(s).unsqueeze(1) + self.relpos(offset + self.relpos_max)
        z = z + self.pair_feat_proj(pair_feats.to(s.dtype) * pair_mask)
        return s, z
