"""Building blocks shared by the trunk and the denoiser: attention with pair bias, transitions, row chunking."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

MASKED = -1e9  # additive attention bias of padded keys


def zero_init(layer: nn.Linear) -> nn.Linear:
    """Zero the weights and bias: the layer's branch starts as a no-op."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def by_rows(fn: Callable[..., Tensor], chunk_size: int | None, *xs: Tensor) -> Tensor:
    """``fn(*xs)`` computed over chunks of dim 1 (the pair rows) to bound the peak memory of wide intermediates.

    Under autograd each chunk is recomputed in backward, so its wide intermediates are never all kept at once.
    """
    if chunk_size is None or xs[0].shape[1] <= chunk_size:
        return fn(*xs)
    recompute = torch.is_grad_enabled() and any(x.requires_grad for x in xs)
    out = []
    for i in range(0, xs[0].shape[1], chunk_size):
        rows = [x[:, i : i + chunk_size] for x in xs]
        out.append(checkpoint(fn, *rows, use_reentrant=False) if recompute else fn(*rows))
    return torch.cat(out, dim=1)


class Transition(nn.Module):
    """Pre-norm two-layer MLP (expansion ``factor``), applied as a residual update; optionally by row chunks."""

    def __init__(self, c: int, factor: int = 2, chunk_size: int | None = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.up = nn.Linear(c, factor * c)
        self.down = nn.Linear(factor * c, c)
        self.chunk_size = chunk_size

    def _update(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(self.norm(x))))

    def forward(self, x: Tensor) -> Tensor:
        return by_rows(self._update, self.chunk_size, x)


class AttentionWithPairBias(nn.Module):
    """Gated multi-head self-attention over residues, biased by the pair representation.

    ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` are plain ``nn.Linear`` so LoRA can target them by name.
    """

    def __init__(self, c: int, c_z: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, c // n_heads
        self.norm = nn.LayerNorm(c)
        self.q_proj = nn.Linear(c, c, bias=False)
        self.k_proj = nn.Linear(c, c, bias=False)
        self.v_proj = nn.Linear(c, c, bias=False)
        self.gate_proj = nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)
        self.pair_norm = nn.LayerNorm(c_z)
        self.pair_bias = nn.Linear(c_z, n_heads, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, s: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        """s [B,L,c], z [B,L,L,c_z], mask [B,L] -> update [B,L,c]."""
        b, n, c = s.shape
        x = self.norm(s)

        def heads(t: Tensor) -> Tensor:
            return t.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        bias = self.pair_bias(self.pair_norm(z)).permute(0, 3, 1, 2)  # [B,H,L,L]
        bias = bias.masked_fill(~mask[:, None, None, :], MASKED)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        o = o.transpose(1, 2).reshape(b, n, c) * torch.sigmoid(self.gate_proj(x))
        return self.dropout(self.out_proj(o))


class FourierEmbedding(nn.Module):
    """Sinusoidal features of a scalar (the noise level) on fixed log-spaced frequencies; no learned state."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(100.0), half)) * math.pi
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        """t [B] -> [B, dim]."""
        arg = t[:, None] * self.freqs[None]
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
        return F.pad(emb, (0, self.dim - emb.shape[-1]))


def radial_basis(d: Tensor, d_max: float, n: int) -> Tensor:
    """Gaussian radial basis of distances d [...] on n centres in [0, d_max] -> [..., n]."""
    centres = torch.linspace(0.0, d_max, n, device=d.device, dtype=d.dtype)
    width = d_max / (n - 1)
    return torch.exp(-(((d.unsqueeze(-1) - centres) / width) ** 2))
