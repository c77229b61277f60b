"""Training losses, all masked by observed residues: EDM denoising, distogram, virtual torsions, smooth lDDT, and
the TM-score and FAPE of a structure rolled out from the prior by the sampler itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rna_hpc.errors import TrainingFailed
from rna_hpc.evaluation.metrics import d0_rna, superpose_tm
from rna_hpc.model.coords import pair_distances, residue_frames, superpose, virtual_torsions
from rna_hpc.model.settings import loss_config

if TYPE_CHECKING:
    from rna_hpc.model.network import RNA3DNet

LDDT_CUTOFF = 30.0  # A: pairs of C1' atoms closer than this in the truth are scored
LDDT_THRESHOLDS = (0.5, 1.0, 2.0, 4.0)  # A
FAPE_CLAMP = 30.0  # A: larger errors count as this (AlphaFold clamps at 10 A, where most of a wrong fold is flat)
FAPE_SCALE = 10.0  # A: FAPE is reported in this unit


def _per_target_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Mean over targets of each target's weighted mean; targets with no weight are left out."""
    dims = tuple(range(1, values.dim()))
    total, count = (values * weights).sum(dims), weights.sum(dims)
    has = count > 0
    if not has.any():
        return values.sum() * 0.0
    return (total[has] / count[has]).mean()


def _pair_mask(coord_mask: Tensor) -> Tensor:
    pm = coord_mask.unsqueeze(1) & coord_mask.unsqueeze(2)
    return pm & ~torch.eye(coord_mask.shape[1], dtype=torch.bool, device=coord_mask.device)


def distogram_loss(logits: Tensor, coords: Tensor, coord_mask: Tensor, bin_of) -> Tensor:
    """Cross-entropy of distogram logits [B,L,L,bins] against the binned true C1' distances."""
    target = bin_of(pair_distances(coords))
    ce = F.cross_entropy(logits.permute(0, 3, 1, 2), target, reduction="none")
    return _per_target_mean(ce, _pair_mask(coord_mask).to(ce.dtype))


def torsion_loss(pred: Tensor, coords: Tensor, coord_mask: Tensor) -> Tensor:
    """Squared (sin, cos) error of the predicted virtual angle/dihedral [B,L,2,2] against the true trace's."""
    angles, valid = virtual_torsions(coords, coord_mask)
    true = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1)
    err = ((pred[..., : true.shape[2], :] - true) ** 2).sum(-1)
    return _per_target_mean(err, valid.to(err.dtype))


def smooth_lddt(pred: Tensor, true: Tensor, coord_mask: Tensor) -> Tensor:
    """Smooth lDDT [B] of predicted vs true coordinates (sigmoids at 0.5/1/2/4 A, pairs < 30 A in the truth)."""
    d_true, d_pred = pair_distances(true), pair_distances(pred)
    scored = (_pair_mask(coord_mask) & (d_true < LDDT_CUTOFF)).to(pred.dtype)
    delta = (d_true - d_pred).abs()
    eps = sum(torch.sigmoid(t - delta) for t in LDDT_THRESHOLDS) / len(LDDT_THRESHOLDS)
    return (eps * scored).sum((1, 2)) / scored.sum((1, 2)).clamp_min(1.0)


def lddt_loss(pred: Tensor, true: Tensor, coord_mask: Tensor) -> Tensor:
    """1 - smooth lDDT, averaged over targets with at least one scored pair."""
    has = (_pair_mask(coord_mask)).flatten(1).any(dim=1)
    if not has.any():
        return pred.sum() * 0.0
    return (1.0 - smooth_lddt(pred, true, coord_mask))[has].mean()


def soft_tm(pred: Tensor, true: Tensor, coord_mask: Tensor) -> Tensor:
    """TM-score [B] of ``pred`` against ``true`` (RNA d0 of the observed count) at the superposition TM-score's own
    refinement finds from the fit of every observed residue; gradients flow through ``pred`` at that superposition."""
    scores = []
    for p, t, m in zip(pred, true, coord_mask, strict=True):
        n = int(m.sum())
        if n == 0:
            scores.append(p.sum() * 0.0)
            continue
        p, t = p[m], t[m].to(p.dtype)
        _, rot, shift = superpose_tm(p.detach().double().cpu().numpy(), t.double().cpu().numpy(), n, fragments=False)
        moved = p @ torch.as_tensor(rot.T, dtype=p.dtype, device=p.device) + torch.as_tensor(
            shift, dtype=p.dtype, device=p.device
        )
        d2 = ((moved - t) ** 2).sum(-1)
        scores.append((1.0 / (1.0 + d2 / d0_rna(n) ** 2)).sum() / n)
    return torch.stack(scores)


def rollout_loss(pred: Tensor, true: Tensor, coord_mask: Tensor) -> Tensor:
    """1 - `soft_tm`, averaged over targets with at least 3 observed residues."""
    has = coord_mask.sum(dim=1) >= 3
    if not has.any():
        return pred.sum() * 0.0
    return (1.0 - soft_tm(pred, true, coord_mask))[has].mean()


def _fape(pred: Tensor, true: Tensor, coord_mask: Tensor) -> tuple[Tensor, Tensor]:
    """`fape` [B] and whether each target has a frame [B]."""
    rot_p, valid = residue_frames(pred, coord_mask)
    rot_t, _ = residue_frames(true, coord_mask)
    local_p = torch.einsum("bkij,bkli->bklj", rot_p, pred[:, None] - pred[:, :, None])
    local_t = torch.einsum("bkij,bkli->bklj", rot_t, true[:, None] - true[:, :, None])
    err = torch.sqrt(((local_p - local_t) ** 2).sum(-1) + 1e-8).clamp(max=FAPE_CLAMP) / FAPE_SCALE
    weight = (valid[:, :, None] & coord_mask[:, None, :]).to(err.dtype)
    return (err * weight).sum((1, 2)) / weight.sum((1, 2)).clamp_min(1.0), valid.any(dim=1)


def fape(pred: Tensor, true: Tensor, coord_mask: Tensor) -> Tensor:
    """Frame-aligned point error [B] in units of 10 A: every observed C1' seen from every residue's frame
    (`rna_hpc.model.coords.residue_frames`, its origin the residue), predicted against true, each error clamped at
    30 A. Where a helix sits relative to another counts, not only the global fit. Targets without a frame score 0."""
    return _fape(pred, true, coord_mask)[0]


def fape_loss(pred: Tensor, true: Tensor, coord_mask: Tensor) -> Tensor:
    """`fape`, averaged over targets with at least one frame."""
    values, has = _fape(pred, true, coord_mask)
    if not has.any():
        return pred.sum() * 0.0
    return values[has].mean()


def diffusion_loss(denoised: Tensor, target: Tensor, coord_mask: Tensor, weight: Tensor) -> Tensor:
    """EDM-weighted MSE of denoised vs true C1' after superposing the truth on the prediction (no gradient)."""
    aligned = superpose(target, denoised, coord_mask)
    sq = ((denoised - aligned) ** 2).sum(-1) / 3.0
    return _per_target_mean(sq * weight[:, None], coord_mask.to(sq.dtype))


def compute_losses(net: RNA3DNet, batch: dict, out: dict, weights: Any, generator=None) -> dict[str, Tensor]:
    """Every weighted loss term and their sum under 'loss'; terms with weight 0 are not computed."""
    w = loss_config(weights)
    coords, cm, mask = batch["coords"].float(), batch["coord_mask"], batch["mask"]
    parts: dict[str, Tensor] = {}
    if w.distogram:
        parts["distogram"] = distogram_loss(out["distogram_logits"], coords, cm, net.heads.distogram.bin_of)
    if w.torsion:
        parts["torsion"] = torsion_loss(out["torsion"], coords, cm)
    if w.diffusion or w.lddt or w.rollout or w.fape:
        prior, has_prior = net.prior_for(batch)
        gen = net.generator
        if w.rollout or w.fape:
            rolled = gen.integrate(out["cond"], prior, mask.bool(), w.rollout_steps, generator)
        if w.rollout:
            parts["rollout"] = rollout_loss(rolled, coords, cm)
        if w.fape:
            parts["fape"] = fape_loss(rolled, coords, cm)
        noisy, sigma, target, prior = gen.training_example(coords, cm, prior, mask, has_prior, generator)
        denoised = gen(noisy, sigma, prior, out["cond"], mask)
        if w.diffusion:
            parts["diffusion"] = diffusion_loss(denoised, target, cm, gen.loss_weight(sigma))
        if w.lddt:
            parts["lddt"] = lddt_loss(denoised, target, cm)
    parts["loss"] = sum(getattr(w, name) * value for name, value in parts.items())
    check_finite(parts, batch.get("target_id"))
    return parts


def check_finite(parts: dict[str, Tensor], target_ids) -> None:
    """Raise TrainingFailed naming the non-finite terms and the batch's targets."""
    if bool(torch.isfinite(parts["loss"]).all()):
        return
    bad = [f"{k}={v.detach().item():g}" for k, v in parts.items() if not torch.isfinite(v).all()]
    ids = ", ".join(map(str, target_ids or [])) or "?"
    raise TrainingFailed(f"non-finite loss ({', '.join(bad)}) on the batch of targets: {ids}")
