"""Batched, masked coordinate geometry in torch: superposition, random rigid motions, virtual C1' torsions, residue
frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_centroid(x: Tensor, mask: Tensor) -> Tensor:
    """Centroid of the masked points of each structure: x [B,L,3], mask [B,L] -> [B,1,3]."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp_min(1.0)


def kabsch(mobile: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation R [B,3,3] and translation t [B,1,3] so that ``mobile @ R + t`` best fits ``target`` on ``mask``.

    Structures with fewer than 3 masked points or non-finite coordinates get the identity rotation.
    Computed in float64; no gradient flows through the superposition.
    """
    with torch.no_grad():
        p = mobile.detach().double()
        q = target.detach().double()
        w = mask.double().unsqueeze(-1)
        pc, qc = masked_centroid(p, mask), masked_centroid(q, mask)
        h = ((p - pc) * w).transpose(1, 2) @ ((q - qc) * w)  # [B,3,3]
        bad = ~torch.isfinite(h).all(dim=(1, 2)) | (mask.sum(dim=1) < 3)
        h = torch.where(bad[:, None, None], torch.eye(3, dtype=h.dtype, device=h.device), h)
        u, _, vt = torch.linalg.svd(h)
        d = torch.sign(torch.linalg.det(u @ vt))
        d = torch.where(d == 0, torch.ones_like(d), d)
        fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
        rot = u @ fix @ vt
        rot = torch.where(bad[:, None, None], torch.eye(3, dtype=rot.dtype, device=rot.device), rot)
        trans = qc - pc @ rot
    return rot.to(mobile.dtype), trans.to(mobile.dtype)


def superpose(mobile: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``mobile`` rigidly moved onto ``target`` (fit on ``mask``); gradients flow through ``mobile`` only."""
    rot, trans = kabsch(mobile, target, mask)
    return mobile @ rot + trans


def random_rotations(n: int, *, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
    """Uniformly random proper rotations [n,3,3] (from random unit quaternions)."""
    q = torch.randn(n, 4, generator=generator, device=device, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).view(n, 3, 3)
    return rot.to(dtype or torch.get_default_dtype())


def pair_distances(x: Tensor) -> Tensor:
    """All pairwise distances [B,L,L] of x [B,L,3] (differentiable, safe at zero)."""
    diff = x.unsqueeze(2) - x.unsqueeze(1)
    return torch.sqrt((diff * diff).sum(-1) + 1e-8)


def _angle(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    u, v = a - b, c - b
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-8)
    return torch.arccos(cos.clamp(-1.0, 1.0))


def _dihedral(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    b0, b1, b2 = a - b, c - b, d - c
    b1n = b1 / b1.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    v = b0 - (b0 * b1n).sum(-1, keepdim=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdim=True) * b1n
    x = (v * w).sum(-1)
    y = (torch.cross(b1n, v, dim=-1) * w).sum(-1)
    return torch.atan2(y, x)


def virtual_torsions(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Virtual C1' bond angle and dihedral of a trace: angles [B,L,2] (radians) and their validity [B,L,2].

    At residue i: angle(i-1, i, i+1) and dihedral(i-1, i, i+1, i+2); valid when every residue involved is observed.
    """
    b, n, _ = x.shape
    angles = x.new_zeros(b, n, 2)
    valid = torch.zeros(b, n, 2, dtype=torch.bool, device=x.device)
    if n >= 3:
        angles[:, 1:-1, 0] = _angle(x[:, :-2], x[:, 1:-1], x[:, 2:])
        valid[:, 1:-1, 0] = mask[:, :-2] & mask[:, 1:-1] & mask[:, 2:]
    if n >= 4:
        angles[:, 1:-2, 1] = _dihedral(x[:, :-3], x[:, 1:-2], x[:, 2:-1], x[:, 3:])
        valid[:, 1:-2, 1] = mask[:, :-3] & mask[:, 1:-2] & mask[:, 2:-1] & mask[:, 3:]
    return angles, valid


def aform_torsions() -> Tensor:
    """Virtual C1' angle and dihedral of the ideal A-form helix (radians) [2], from `rna_hpc.geometry.aform_helix`."""
    from rna_hpc.geometry import aform_helix

    helix = torch.as_tensor(aform_helix(6), dtype=torch.float64).unsqueeze(0)
    angles, _ = virtual_torsions(helix, torch.ones(1, 6, dtype=torch.bool))
    return angles[0, 2].float()


def residue_frames(x: Tensor, coord_mask: Tensor) -> tuple[Tensor, Tensor]:
    """A frame at each C1' [B,L,3] from its chain neighbours: rotations [B,L,3,3] (columns: towards the next residue,
    then towards the previous one made orthogonal, then their cross product), and where all three are observed
    [B,L] (never at the chain ends). Each frame's origin is its residue."""
    nxt, prev = torch.roll(x, -1, dims=1) - x, torch.roll(x, 1, dims=1) - x
    e1 = F.normalize(nxt, dim=-1, eps=1e-6)
    e2 = F.normalize(prev - (prev * e1).sum(-1, keepdim=True) * e1, dim=-1, eps=1e-6)
    rot = torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)
    valid = coord_mask & torch.roll(coord_mask, -1, dims=1) & torch.roll(coord_mask, 1, dims=1)
    valid[:, 0] = valid[:, -1] = False
    return rot, valid
