"""Prior structures Stage D refines: the secondary-structure model, a template, the A-form helix, or none."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from rna_hpc.errors import InputError

if TYPE_CHECKING:
    from rna_hpc.model.template_prior import TemplatePrior

VOCAB = "ACGUN"
MFE_CHANNEL = 1  # Stage A pair feature channel of the MFE-paired indicator


def mfe_partners(paired: np.ndarray) -> np.ndarray:
    """Partner index (or -1) of each residue from an L x L 0/1 MFE pair indicator."""
    has = paired.max(axis=1) > 0.5
    return np.where(has, paired.argmax(axis=1), -1).astype(np.int64)


@lru_cache(maxsize=4096)
def _ss_model(sequence: str, partners: tuple[int, ...]) -> np.ndarray:
    """`rna_hpc.geometry.ss_model_coords` of a sequence and its pairing, cached: training asks again every epoch."""
    from rna_hpc.geometry import ss_model_coords

    xyz = ss_model_coords(sequence, np.array(partners, dtype=np.int64))
    xyz.flags.writeable = False
    return xyz


def prior_coords(batch: dict, kind: str, templates: TemplatePrior | None = None) -> Tensor | None:
    """[B,L,3] prior for each target of a batch (zeros on padding), or None for ``kind == 'none'``.

    ``ss_model``: stems from the Stage A MFE pairs laid out as A-form duplexes, loops as arcs, compacted to the
    size of real chains (`rna_hpc.geometry.ss_model_coords`); ``template``: the best hit of ``templates``
    (`TemplatePrior`); ``aform``: one ideal A-form strand.
    """
    if kind == "none":
        return None
    from rna_hpc.geometry import aform_helix

    seq, mask = batch["seq"], batch["mask"]
    if kind == "ss_model" and batch["pair_feats"].shape[-1] <= MFE_CHANNEL:
        raise InputError(f"generator.prior=ss_model needs the MFE pairs in batch['pair_feats'][..., {MFE_CHANNEL}]")
    if kind == "template" and templates is None:
        raise InputError("generator.prior=template needs a template index (the training split, or templates_dir)")
    out = torch.zeros(*seq.shape, 3, dtype=torch.float32)
    lengths = mask.sum(dim=1).tolist()
    for b, n in enumerate(lengths):
        sequence = "".join(VOCAB[i] for i in seq[b, :n].tolist())
        if kind == "aform":
            xyz = aform_helix(n)
        elif kind == "template":
            residues = batch["residue_index"][b, :n].cpu().numpy()
            xyz = templates.crop(str(batch["target_id"][b]), sequence, residues)
        else:
            paired = batch["pair_feats"][b, :n, :n, MFE_CHANNEL].detach().float().cpu().numpy()
            xyz = _ss_model(sequence, tuple(mfe_partners(paired).tolist()))
        out[b, :n] = torch.tensor(np.asarray(xyz), dtype=torch.float32)  # a copy: cached priors are read-only
    return out.to(seq.device)
