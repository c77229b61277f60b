"""RNA3DNet: sequence + Stage A pair features -> C1' coordinates, in named pipeline stages.

embedding -> trunk (Stage B) -> heads (torsions, distogram) -> merger -> generator (Stage D diffusion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rna_hpc.errors import InputError
from rna_hpc.model.embedding import InputEmbedding
from rna_hpc.model.generator import Denoiser
from rna_hpc.model.heads import Heads
from rna_hpc.model.merger import Merger
from rna_hpc.model.prior import prior_coords
from rna_hpc.model.settings import model_config, network_config
from rna_hpc.model.trunk import Trunk

if TYPE_CHECKING:
    from rna_hpc.model.template_prior import TemplatePrior

REQUIRED_KEYS = ("seq", "mask", "pair_feats", "residue_index")
STAGES = ("embedding", "trunk", "heads", "merger", "generator")


class RNA3DNet(nn.Module):
    """The whole model; every size comes from the config parts (dataclasses or mappings of the schema).

    ``name`` and ``init_from`` are accepted so that ``hydra.utils.instantiate(cfg.model)`` works; loading
    ``init_from`` is the LightningModule's job (before LoRA adapters are injected).
    """

    def __init__(
        self,
        trunk: Any = None,
        heads: Any = None,
        merger: Any = None,
        generator: Any = None,
        name: str = "model",
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        parts = {"trunk": trunk, "heads": heads, "merger": merger, "generator": generator}
        self.config = network_config(name, init_from, parts)
        cfg = self.config
        self.embedding = InputEmbedding(cfg.trunk)
        self.trunk = Trunk(cfg.trunk)
        self.heads = Heads(cfg.heads)
        self.merger = Merger(cfg.merger, cfg.trunk.pair_feat_dim)
        self.generator = Denoiser(cfg.generator)
        self.templates: TemplatePrior | None = None  # data, not weights: set by `attach_templates`

    def attach_templates(self, templates: TemplatePrior | None) -> None:
        """The template index that ``generator.prior=template`` draws its priors from."""
        self.templates = templates

    def forward(self, batch: dict) -> dict[str, Tensor]:
        """single [B,L,c_s], pair [B,L,L,c_z], torsion [B,L,T,2], distogram_logits [B,L,L,bins], cond {single, pair}."""
        missing = [k for k in REQUIRED_KEYS if k not in batch]
        if missing:
            raise InputError(f"batch lacks {', '.join(missing)} (keys present: {', '.join(sorted(batch))})")
        mask = batch["mask"].bool()
        s, z = self.embedding(batch["seq"], batch["residue_index"], batch["pair_feats"], mask)
        s, z = self.trunk(s, z, mask)
        torsion, distogram_logits = self.heads(s, z)
        cond = self.merger(s, torsion, z, batch["pair_feats"])
        return {"single": s, "pair": z, "torsion": torsion, "distogram_logits": distogram_logits, "cond": cond}

    def prior_for(self, batch: dict) -> tuple[Tensor, bool]:
        """The structure Stage D refines: ``batch['prior_coords']``, else the configured prior, else zeros."""
        prior = batch.get("prior_coords")
        if prior is None:
            prior = prior_coords(batch, self.config.generator.prior, self.templates)
        if prior is None:
            return torch.zeros(*batch["seq"].shape, 3, device=batch["seq"].device), False
        return prior.to(device=batch["seq"].device, dtype=torch.get_default_dtype()), True

    def loss(self, batch: dict, out: dict[str, Tensor], weights: Any, generator=None) -> dict[str, Tensor]:
        """Weighted loss terms and their sum ('loss'); see `rna_hpc.model.losses.compute_losses`."""
        from rna_hpc.model.losses import compute_losses

        return compute_losses(self, batch, out, weights, generator)

    @torch.no_grad()
    def sample(
        self,
        batch: dict,
        n_samples: int | None = None,
        n_steps: int | None = None,
        generator: torch.Generator | None = None,
        out: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """Sampled C1' coordinates [B,S,L,3] (S = n_samples, default generator.n_samples)."""
        g = self.config.generator
        out = self(batch) if out is None else out
        prior, _ = self.prior_for(batch)
        return self.generator.sample(
            out["cond"], prior, batch["mask"].bool(), n_samples or g.n_samples, n_steps or g.n_steps, generator
        )


def build_network(model: Any) -> nn.Module:
    """The network a model config describes, built with ``hydra.utils.instantiate`` (honours its ``_target_``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.structured(model_config(model)))
