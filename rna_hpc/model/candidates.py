"""Candidate structures for prediction, by source, before ranking (`rna_hpc.evaluation.ranking`).

Sources (``predict.candidates``):
- ``model``: diffusion samples of the trained model around its configured prior (with the secondary-structure or the
  template prior, one sample per variant of it, see `model_samples`);
- ``model_template``: diffusion samples refined from the best template hit (targets with a hit only);
- ``fold``: variant k of the secondary-structure model refolded against the distances the model's distogram predicts
  (`rna_hpc.model.restraint_fold`);
- ``ss_model``: the secondary-structure model, then variants with tilted loops;
- ``template``: coordinates copied from the best template hits (gaps from the secondary-structure model);
- ``helix``: the ideal A-form strand.
Every source brings at most ``n`` candidates per target.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rna_hpc.config.schema import FoldConfig
from rna_hpc.config.validate import CANDIDATE_SOURCES
from rna_hpc.config.validate import NEEDS_TEMPLATES as CONFIG_NEEDS_TEMPLATES
from rna_hpc.evaluation.baselines import BaselineContext, baseline_samples, helix_baseline, ss_baseline
from rna_hpc.model.prior import VOCAB
from rna_hpc.model.restraint_fold import fold_from_logits
from rna_hpc.model.template_prior import TemplatePrior

SOURCES = CANDIDATE_SOURCES
NEEDS_TEMPLATES = CONFIG_NEEDS_TEMPLATES


@dataclass
class Pool:
    """One target's candidates [L, 3] with their names ('<source>_<k>') and sources."""

    coords: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add(self, source: str, models: np.ndarray | list[np.ndarray]) -> None:
        for k, xyz in enumerate(models):
            self.coords.append(np.asarray(xyz, dtype=float))
            self.names.append(f"{source}_{k}")
            self.sources.append(source)


def batch_sequences(batch: dict) -> list[str]:
    """The (normalised) sequence of each target of a collated batch."""
    lengths = batch["mask"].sum(dim=1).tolist()
    return ["".join(VOCAB[i] for i in batch["seq"][b, :n].tolist()) for b, n in enumerate(lengths)]


def template_priors(batch: dict, sequences: list[str], templates: TemplatePrior) -> tuple[torch.Tensor, list[bool]]:
    """``prior_coords`` [B, L, 3] from each target's best hit, and whether it had one (else the ss model)."""
    prior = torch.zeros(*batch["seq"].shape, 3)
    has_hit = []
    for b, (tid, seq) in enumerate(zip(batch["target_id"], sequences, strict=True)):
        prior[b, : len(seq)] = torch.as_tensor(templates.chain(str(tid), seq), dtype=torch.float32)
        has_hit.append(templates.best_hit(str(tid), seq) is not None)
    return prior, has_hit


def candidate_pools(
    module,  # noqa: ANN001 - an RNA3DModule
    batch: dict,
    sources: list[str],
    n: int,
    templates: TemplatePrior | None,
    generator: torch.Generator,
    seed: int = 0,
    ensemble: str = "tilt",
    fold: FoldConfig | None = None,
) -> list[Pool]:
    """A `Pool` per target of ``batch`` with up to ``n`` candidates from each of ``sources``; ``ensemble`` says how
    the secondary-structure variants after the first differ (`rna_hpc.evaluation.baselines.ss_pairs`), ``fold``
    how the ``fold`` candidates are folded."""
    sequences = batch_sequences(batch)
    pools = [Pool() for _ in sequences]
    for source in sources:
        if source in NEEDS_TEMPLATES and templates is None:
            raise ValueError(f"candidate source {source!r} needs a template index")
        if source == "model":
            samples = model_samples(module, batch, sequences, n, generator, seed, ensemble)
            for b, seq in enumerate(sequences):
                pools[b].add(source, samples[b, :, : len(seq)])
        elif source == "fold":
            folded = fold_samples(module, batch, sequences, n, BaselineContext(seed=seed, ensemble=ensemble), fold)
            for b, seq in enumerate(sequences):
                pools[b].add(source, folded[b, :, : len(seq)])
        elif source == "model_template":
            prior, has_hit = template_priors(batch, sequences, templates)
            with_prior = batch | {"prior_coords": prior}
            samples = module.predict_coords(with_prior, n_samples=n, generator=generator).cpu().numpy()
            for b, seq in enumerate(sequences):
                if has_hit[b]:
                    pools[b].add(source, samples[b, :, : len(seq)])
        else:
            for b, (tid, seq) in enumerate(zip(batch["target_id"], sequences, strict=True)):
                pools[b].add(source, _baseline(source, str(tid), seq, n, templates, seed, ensemble))
    return pools


def model_samples(
    module,  # noqa: ANN001 - an RNA3DModule
    batch: dict,
    sequences: list[str],
    n: int,
    generator: torch.Generator,
    seed: int = 0,
    ensemble: str = "tilt",
) -> np.ndarray:
    """[B, n, L, 3] diffusion samples. Sample k refines variant k of the model's prior, so the samples differ in their
    overall fold as well as in detail: with the secondary-structure prior, variant 0 is the prior itself, then loops
    and stems tilted at random or, with ``ensemble="boltzmann"``, other pairings sampled from the Boltzmann ensemble
    (as the ``ss_model`` candidates); with the template prior, template hits and ss variants in turn
    (`template_variants`). With another prior, or ``batch["prior_coords"]``, all n samples refine that one."""
    kind, templates = module.net.config.generator.prior, module.net.templates
    if kind not in ("ss_model", "template") or (kind == "template" and templates is None) or "prior_coords" in batch:
        return module.predict_coords(batch, n_samples=n, generator=generator).cpu().numpy()
    context = BaselineContext(seed=seed, ensemble=ensemble)
    if kind == "template":
        priors = template_variants(sequences, templates, n, context, batch["seq"].shape[1])
    else:
        priors = [ss_priors(batch, sequences, replace(context, sample=k)) for k in range(n)]
    out = []
    for prior in priors:
        batch_k = batch | {"prior_coords": prior.to(batch["seq"].device)}
        out.append(module.predict_coords(batch_k, n_samples=1, generator=generator).cpu().numpy())
    return np.concatenate(out, axis=1)


def ss_priors(batch: dict, sequences: list[str], context: BaselineContext) -> torch.Tensor:
    """[B, L, 3] variant ``context.sample`` of each target's secondary-structure model (zeros on padding)."""
    prior = torch.zeros(*batch["seq"].shape, 3)
    for b, seq in enumerate(sequences):
        prior[b, : len(seq)] = torch.as_tensor(ss_baseline(seq, context), dtype=torch.float32)
    return prior


def template_variants(
    sequences: list[str], templates: TemplatePrior, n: int, context: BaselineContext, width: int
) -> torch.Tensor:
    """[n, B, width, 3] the n priors of each target (zeros on padding): template hits and variants of the
    secondary-structure model in turn (hit 0, ss 0, hit 1, ss 1, ...; ss variants where the hits run out), so the
    samples cover both the folds the templates give and those the pairing gives."""
    priors = torch.zeros(n, len(sequences), width, 3)
    for b, seq in enumerate(sequences):
        hits = templates.models(seq, (n + 1) // 2, prior=ss_baseline(seq, BaselineContext(seed=context.seed)))
        ss = list(baseline_samples(ss_baseline, seq, context, n))
        in_turn = [xyz for pair in zip(hits, ss, strict=False) for xyz in pair] + ss[len(hits) :]
        priors[:, b, : len(seq)] = torch.as_tensor(np.stack(in_turn[:n]), dtype=torch.float32)
    return priors


def fold_samples(
    module,  # noqa: ANN001 - an RNA3DModule
    batch: dict,
    sequences: list[str],
    n: int,
    context: BaselineContext,
    cfg: FoldConfig | None = None,
) -> np.ndarray:
    """[B, n, L, 3]: fold k is variant k of the secondary-structure model folded against the distogram's
    expected distances (`rna_hpc.model.restraint_fold.fold_from_logits`)."""
    net = module.net
    with torch.no_grad():
        logits = net(batch)["distogram_logits"].float().cpu()
    mask = batch["mask"].bool().cpu()
    edges = net.heads.distogram.bin_edges.cpu()
    out = []
    for k in range(n):
        prior = ss_priors(batch, sequences, BaselineContext(sample=k, seed=context.seed, ensemble=context.ensemble))
        out.append(fold_from_logits(prior, logits, edges, mask, cfg).numpy())
    return np.stack(out, axis=1)


def _baseline(
    source: str, target_id: str, seq: str, n: int, templates: TemplatePrior | None, seed: int, ensemble: str
) -> list:
    context = BaselineContext(seed=seed, ensemble=ensemble)
    if source == "ss_model":
        return list(baseline_samples(ss_baseline, seq, context, n))
    if source == "helix":
        return [helix_baseline(seq, context)]
    if source == "template":
        return templates.models(seq, n, prior=ss_baseline(seq, BaselineContext(seed=seed)))
    raise ValueError(f"unknown candidate source {source!r} (known: {', '.join(SOURCES)})")
