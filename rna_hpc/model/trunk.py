"""Stage B: blocks of pair-biased attention on the single representation and updates of the pair representation."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rna_hpc.config.schema import TrunkConfig
from rna_hpc.model.layers import AttentionWithPairBias, Transition, by_rows

OUTER_DIM = 16  # channels of each side of the outer product


class OuterProductUpdate(nn.Module):
    """z_ij += Lin(a_i (x) b_j): single -> pair communication, computed by row chunks.

    The output layer is folded into ``a`` first (``sum_cd a_ic b_jd W_zcd``), so the ``c x d``-channel outer product
    of every pair is never built: 16 times fewer operations, the same function and parameters.
    """

    def __init__(self, c_s: int, c_z: int, chunk_size: int | None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c_s)
        self.a = nn.Linear(c_s, OUTER_DIM)
        self.b = nn.Linear(c_s, OUTER_DIM)
        self.out = nn.Linear(OUTER_DIM * OUTER_DIM, c_z)
        self.chunk_size = chunk_size

    def _out_affine(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``self.out`` as (weight [c, d, z], bias [z]), read off the basis vectors: an adapter on it (LoRA) counts."""
        n = OUTER_DIM * OUTER_DIM
        eye = torch.eye(n, dtype=like.dtype, device=like.device)
        with torch.autocast(like.device.type, enabled=False):  # in the residual stream's precision, not autocast's
            affine = self.out(torch.cat([eye.new_zeros(1, n), eye]))
        bias = affine[0]
        return (affine[1:] - bias).view(OUTER_DIM, OUTER_DIM, -1), bias

    def forward(self, s: Tensor, mask: Tensor) -> Tensor:
        x = self.norm(s)
        m = mask.unsqueeze(-1).to(s.dtype)
        a, b = self.a(x) * m, self.b(x) * m
        weight, bias = self._out_affine(s)

        def rows(a_rows: Tensor) -> Tensor:
            folded = torch.einsum("bic,cdz->bidz", a_rows, weight.to(a_rows.dtype))
            return torch.einsum("bidz,bjd->bijz", folded, b) + bias.to(a_rows.dtype)

        return by_rows(rows, self.chunk_size, a)


class TriangleMultiplication(nn.Module):
    """Outgoing triangle multiplicative update: z_ij += g_ij * Lin(LN(sum_k a_ik b_jk))."""

    def __init__(self, c_z: int, chunk_size: int | None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c_z)
        self.a = nn.Linear(c_z, c_z)
        self.a_gate = nn.Linear(c_z, c_z)
        self.b = nn.Linear(c_z, c_z)
        self.b_gate = nn.Linear(c_z, c_z)
        self.gate = nn.Linear(c_z, c_z)
        self.out_norm = nn.LayerNorm(c_z)
        self.out = nn.Linear(c_z, c_z)
        self.chunk_size = chunk_size

    def forward(self, z: Tensor, pair_mask: Tensor) -> Tensor:
        x = self.norm(z)
        m = pair_mask.unsqueeze(-1).to(z.dtype)
        a = torch.sigmoid(self.a_gate(x)) * self.a(x) * m
        b = torch.sigmoid(self.b_gate(x)) * self.b(x) * m

        def rows(x_rows: Tensor, a_rows: Tensor) -> Tensor:
            prod = torch.einsum("bikc,bjkc->bijc", a_rows, b)
            return torch.sigmoid(self.gate(x_rows)) * self.out(self.out_norm(prod))

        return by_rows(rows, self.chunk_size, x, a)


class TrunkBlock(nn.Module):
    """Attention with pair bias -> single transition -> outer product -> [triangle update] -> pair transition."""

    def __init__(self, cfg: TrunkConfig) -> None:
        super().__init__()
        chunk = cfg.pair_chunk_size
        self.attn = AttentionWithPairBias(cfg.c_s, cfg.c_z, cfg.n_heads, cfg.dropout)
        self.single_transition = Transition(cfg.c_s)
        self.outer_product = OuterProductUpdate(cfg.c_s, cfg.c_z, chunk)
        self.triangle = TriangleMultiplication(cfg.c_z, chunk) if cfg.triangle_updates else None
        self.pair_transition = Transition(cfg.c_z, chunk_size=chunk)

    def forward(self, s: Tensor, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        pair_mask = mask.unsqueeze(1) & mask.unsqueeze(2)
        s = s + self.attn(s, z, mask)
        s = s + self.single_transition(s)
        z = z + self.outer_product(s, mask)
        if self.triangle is not None:
            z = z + self.triangle(z, pair_mask)
        z = z + self.pair_transition(z)
        return s, z


class Trunk(nn.Module):
    """Stage B: ``n_blocks`` trunk blocks, each optionally recomputed in backward (activation checkpointing)."""

    def __init__(self, cfg: TrunkConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TrunkBlock(cfg) for _ in range(cfg.n_blocks))
        self.activation_checkpointing = cfg.activation_checkpointing

    def forward(self, s: Tensor, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                s, z = checkpoint(block, s, z, mask, use_reentrant=False)
            else:
                s, z = block(s, z, mask)
        return s, z
