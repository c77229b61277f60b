"""Distogram-restrained folding: C1' coordinates that satisfy the pair distances a distogram predicts.

`expected_distances` turns distogram logits into an expected C1'-C1' distance per pair and a confidence: the
probability mass within ``window`` A of that distance beyond chance (a flat distribution, as an untrained head gives,
restrains nothing, nor does mass beyond the last bin edge). `fold` starts from a prior structure and minimises

    E = mean w (d - mu)^2                                      predicted distances, weighted by confidence w
      + bond  * mean (d[i, i+1] - bond_length)^2               chain steps
      + clash * mean relu(clash_distance - d[i, j])^2          |i - j| >= 2
      + prior * mean (1 - w) (d - d0)^2                        the prior's own distances where the distogram is unsure

(means over the residue pairs, so a pair restrains in proportion to its confidence)

with Adam on the coordinates (a few hundred steps, under a second for L = 100 on one CPU core), and keeps the
right-handed one of the result and its mirror image (`right_handed`). With
``differentiable=True`` every step stays in the autograd graph, so the folded coordinates are a function of the
expected distances and confidences, and so of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rna_hpc.config.schema import FoldConfig
from rna_hpc.geometry import CLASH_DISTANCE
from rna_hpc.model.coords import masked_centroid, pair_distances, virtual_torsions

_BETAS = (0.9, 0.999)
_EPS = 1e-8


@dataclass(frozen=True)
class Restraints:
    """Target distances ``mu`` [B, L, L] (A) and their weights ``weight`` [B, L, L] in [0, 1]."""

    mu: Tensor
    weight: Tensor


def bin_centres(bin_edges: Tensor) -> Tensor:
    """Distance [bins] of each distogram class: midpoints between edges, half a step beyond the outer edges."""
    step = bin_edges[1] - bin_edges[0] if bin_edges.numel() > 1 else bin_edges.new_tensor(1.0)
    mids = 0.5 * (bin_edges[1:] + bin_edges[:-1])
    return torch.cat([bin_edges[:1] - 0.5 * step, mids, bin_edges[-1:] + 0.5 * step])


def expected_distances(logits: Tensor, bin_edges: Tensor, mask: Tensor, window: float = 2.0) -> Restraints:
    """Restraints from distogram logits [B, L, L, bins] (`rna_hpc.model.heads.DistogramHead`) on ``mask`` [B, L].

    ``mu`` is the expected distance over the bins below the last edge; ``weight`` is the probability mass of those
    bins within ``window`` A of ``mu`` beyond what a flat distribution puts there, rescaled to [0, 1] (0 on the
    diagonal and on padding). Differentiable in ``logits``.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    centres = bin_centres(bin_edges.to(probs))
    near = probs[..., :-1]  # the last class is "beyond the last edge": no distance to restrain to
    p_in = near.sum(-1).clamp_min(_EPS)
    mu = (near * centres[:-1]).sum(-1) / p_in
    close = ((centres[:-1] - mu.unsqueeze(-1)).abs() <= window).to(probs)
    chance = close.sum(-1) / close.shape[-1]  # the mass a flat distribution puts there
    weight = (((near * close).sum(-1) - chance) / (1.0 - chance).clamp_min(_EPS)).clamp(0.0, 1.0)
    return Restraints(mu=mu, weight=weight * _pair_mask(mask).to(weight))


def exact_restraints(coords: Tensor, mask: Tensor) -> Restraints:
    """Restraints with the distances of ``coords`` [B, L, 3] itself, full weight on every pair of ``mask``."""
    return Restraints(mu=pair_distances(coords.float()), weight=_pair_mask(mask).float())


def restraint_energy(x: Tensor, restraints: Restraints, prior_d: Tensor, mask: Tensor, cfg: FoldConfig) -> Tensor:
    """The energy [B] of coordinates ``x`` [B, L, 3] (terms in the module docstring); ``prior_d`` [B, L, L]."""
    d = pair_distances(x)
    pairs = _pair_mask(mask).to(x.dtype)
    w = restraints.weight.to(x.dtype)
    energy = _mean(w * (d - restraints.mu) ** 2, pairs)
    if cfg.prior_weight:
        energy = energy + cfg.prior_weight * _mean((1.0 - w) * pairs * (d - prior_d) ** 2, pairs)
    if cfg.bond_weight and x.shape[1] > 1:
        step = torch.diagonal(d, offset=1, dim1=1, dim2=2)
        bonded = (mask[:, 1:] & mask[:, :-1]).to(x.dtype)
        energy = energy + cfg.bond_weight * _mean(bonded * (step - cfg.bond_length) ** 2, bonded)
    if cfg.clash_weight:
        idx = torch.arange(x.shape[1], device=x.device)
        far = pairs * ((idx[:, None] - idx[None, :]).abs() >= 2).to(x.dtype)
        clash = torch.relu(CLASH_DISTANCE - d) ** 2
        energy = energy + cfg.clash_weight * _mean(far * clash, far)
    return energy


def fold(
    prior: Tensor, restraints: Restraints, mask: Tensor, cfg: FoldConfig | None = None, differentiable: bool = False
) -> Tensor:
    """Coordinates [B, L, 3] minimising `restraint_energy` from ``prior`` [B, L, 3] (padding stays as given).

    ``differentiable=True`` keeps the steps in the graph (gradients reach ``restraints``); otherwise the result
    is detached.
    """
    cfg = cfg or FoldConfig()
    keep = mask.unsqueeze(-1).to(prior.dtype)
    start = prior.detach().float()
    prior_d = pair_distances(start)
    x = start.clone().requires_grad_(True)
    m, v = torch.zeros_like(start), torch.zeros_like(start)
    with torch.enable_grad():
        for t in range(1, cfg.steps + 1):
            energy = restraint_energy(x, restraints, prior_d, mask, cfg).sum()
            (grad,) = torch.autograd.grad(energy, x, create_graph=differentiable)
            m = _BETAS[0] * m + (1 - _BETAS[0]) * grad
            v = _BETAS[1] * v + (1 - _BETAS[1]) * grad * grad
            m_hat, v_hat = m / (1 - _BETAS[0] ** t), v / (1 - _BETAS[1] ** t)
            x = x - cfg.lr * keep * m_hat / (torch.sqrt(v_hat + _EPS**2) + _EPS)
            if not differentiable:
                x, m, v = x.detach().requires_grad_(True), m.detach(), v.detach()
    x = right_handed(x, mask)
    return x if differentiable else x.detach()


def right_handed(x: Tensor, mask: Tensor) -> Tensor:
    """``x`` [B, L, 3] with every target whose median virtual C1' dihedral is negative reflected through its centroid.

    Distances cannot tell a fold from its mirror image; RNA helices are right-handed (the median dihedral of every
    training chain of 40 nt or more is positive, that of the A-form helix is +0.29 rad), so the mirror is the wrong one.
    """
    angles, valid = virtual_torsions(x.detach(), mask)
    flip = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    for b in range(x.shape[0]):
        dihedrals = angles[b, valid[b, :, 1], 1]
        if dihedrals.numel() and float(dihedrals.median()) < 0:
            flip[b] = -1.0
    centre = masked_centroid(x, mask)
    mirror = torch.stack([torch.ones_like(flip), torch.ones_like(flip), flip], dim=-1)[:, None, :]
    return torch.where(mask.unsqueeze(-1), (x - centre) * mirror + centre, x)  # padding stays as it is


def fold_from_logits(
    prior: Tensor, logits: Tensor, bin_edges: Tensor, mask: Tensor, cfg: FoldConfig | None = None
) -> Tensor:
    """`fold` ``prior`` [B, L, 3] against the restraints of distogram ``logits`` [B, L, L, bins] (detached)."""
    cfg = cfg or FoldConfig()
    restraints = expected_distances(logits.detach(), bin_edges, mask, cfg.window)
    return fold(prior, restraints, mask, cfg)


def _pair_mask(mask: Tensor) -> Tensor:
    pm = mask.unsqueeze(1) & mask.unsqueeze(2)
    return pm & ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)


def _mean(values: Tensor, weights: Tensor) -> Tensor:
    """Per target: the sum of ``values`` over the sum of ``weights`` (0 where there is no weight)."""
    dims = tuple(range(1, values.dim()))
    return values.sum(dims) / weights.sum(dims).clamp_min(_EPS)
