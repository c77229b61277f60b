"""Baseline predictors, each a function `(sequence, context) -> coords [L, 3]`.

- `helix_baseline`: the whole chain as one strand of an ideal A-form helix.
- `ss_baseline`: the ViennaRNA MFE secondary structure laid out in 3D and compacted
  (`rna_hpc.geometry.ss_model_coords`); its later samples tilt loops at random (``ensemble="tilt"``) or lay out
  structures sampled from the Boltzmann ensemble (``ensemble="boltzmann"``), so that they differ in pairing.
- `template_baseline`: coordinates copied from the most similar chain of known structure (`TemplateIndex`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rna_hpc.config.validate import SS_ENSEMBLES
from rna_hpc.evaluation.templates import TemplateIndex
from rna_hpc.geometry import aform_helix, ss_model_coords


@dataclass(frozen=True)
class BaselineContext:
    """What a baseline may use besides the sequence; `sample` numbers the model (0 = the deterministic one)."""

    target_id: str | None = None
    templates: TemplateIndex | None = None
    sample: int = 0
    seed: int = 0
    ensemble: str = "tilt"  # later ss samples: "tilt" (MFE pairs, tilted loops) | "boltzmann" (sampled pairings)


ENSEMBLES = SS_ENSEMBLES
BOLTZMANN_SAMPLES = 8  # structures drawn per sequence for the later ss samples (sample k takes the (k-1)-th)


Baseline = Callable[[str, BaselineContext], np.ndarray]


@lru_cache(maxsize=256)
def _mfe_pairs(sequence: str) -> tuple[int, ...]:
    """Partner index (or -1) of every residue in the ViennaRNA minimum free energy structure (cached)."""
    from rna_hpc.data.features import mfe_pairs

    return tuple(mfe_pairs(sequence.upper().replace("T", "U")).tolist())


@lru_cache(maxsize=256)
def _sampled_pairs(sequence: str, seed: int) -> tuple[tuple[int, ...], ...]:
    """Distinct non-MFE structures of the Boltzmann ensemble (`rna_hpc.data.features.sampled_pairs`, cached)."""
    from rna_hpc.data.features import sampled_pairs

    drawn = sampled_pairs(sequence.upper().replace("T", "U"), BOLTZMANN_SAMPLES, seed)
    return tuple(tuple(p.tolist()) for p in drawn)


def ss_pairs(sequence: str, context: BaselineContext) -> np.ndarray:
    """The pairing `ss_baseline` lays out for `context.sample`: the MFE one, or with ``ensemble="boltzmann"`` the
    (sample-1)-th structure sampled from the ensemble (the MFE one once the ensemble has no other left)."""
    if context.ensemble not in ENSEMBLES:
        raise ValueError(f"ss ensemble {context.ensemble!r} is not one of {', '.join(ENSEMBLES)}")
    if context.sample > 0 and context.ensemble == "boltzmann":
        drawn = _sampled_pairs(sequence, context.seed)
        if context.sample - 1 < len(drawn):
            return np.array(drawn[context.sample - 1])
    return np.array(_mfe_pairs(sequence))


def helix_baseline(sequence: str, context: BaselineContext) -> np.ndarray:
    """Ideal A-form single strand."""
    return aform_helix(len(sequence))


def ss_baseline(sequence: str, context: BaselineContext) -> np.ndarray:
    """A secondary structure (`ss_pairs`) as A-form stems and loop circles, compacted to the size of real chains
    (`rna_hpc.geometry.ss_model_coords`); samples after the first tilt loops at random."""
    rng = None if context.sample == 0 else np.random.default_rng([context.seed, context.sample])
    return ss_model_coords(sequence, ss_pairs(sequence, context), rng)


def template_baseline(sequence: str, context: BaselineContext) -> np.ndarray:
    """The `sample`-th template hit (never the target itself), its gaps taken from the secondary-structure model;
    the secondary-structure model alone when no hit is left."""
    prior = ss_baseline(sequence, context)
    if context.templates is not None:
        models = context.templates.predict(sequence, context.sample + 1, exclude_id=context.target_id, prior=prior)
        if len(models) > context.sample:
            return models[context.sample]
    return prior


BASELINES: dict[str, Baseline] = {"helix": helix_baseline, "ss": ss_baseline, "template": template_baseline}


def baseline_samples(fn: Baseline, sequence: str, context: BaselineContext, n: int = 5) -> np.ndarray:
    """`n` models [n, L, 3] of one baseline, sample numbers 0..n-1."""
    base = {k: v for k, v in vars(context).items() if k != "sample"}
    return np.stack([fn(sequence, BaselineContext(**base, sample=s)) for s in range(n)])
