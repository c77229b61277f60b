"""Template priors: the coordinates of the best template hit as the structure Stage D refines.

A `TemplatePrior` wraps a `TemplateIndex` (chains of known structure). A query that is itself in the index (a
training target) never gets its own entry, nor one more identical than ``max_identity``: training then sees
templates as remote as those of new targets, instead of learning to copy near-duplicates. Residues a template does
not cover, and targets with no hit, take the secondary-structure model. Priors of whole chains are cached per target,
so a training crop is a slice of its chain's prior.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rna_hpc.evaluation.baselines import BaselineContext, ss_baseline
from rna_hpc.evaluation.templates import SEARCH_MODES, TemplateHit, TemplateIndex, fill_gaps

DEFAULT_MAX_IDENTITY = 0.6  # identity (identical aligned residues / query length) above which an index entry is skipped
SEARCH_DEPTH = 10  # hits looked at when the best ones are too identical


class TemplatePrior:
    """Per-target template coordinates [L, 3] from an index, cached by (target_id, sequence).

    ``exclude_self`` (training and validation): an indexed chain never gets its own entry nor one more identical than
    ``max_identity``. Without it (prediction) every entry may serve. ``search`` is `TemplateIndex.search`'s mode:
    ``sequence`` (alignment score) or ``structure`` (identity plus agreement of the predicted pairing).
    """

    def __init__(
        self,
        index: TemplateIndex,
        exclude_self: bool = True,
        max_identity: float = DEFAULT_MAX_IDENTITY,
        search: str = "sequence",
    ) -> None:
        if search not in SEARCH_MODES:
            raise ValueError(f"template search {search!r} is not one of {', '.join(SEARCH_MODES)}")
        self.index = index
        self.exclude_self = exclude_self
        self.max_identity = float(max_identity)
        self.search = search
        self._entries = {e.target_id: e for e in index.entries}
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def from_samples(cls, samples: Iterable[dict[str, Any]], **kwargs: Any) -> TemplatePrior:
        """An index of prepared data samples (``target_id``, ``sequence``, ``coords`` [K, L, 3], reference 0 used)."""
        triples = [(s["target_id"], s["sequence"], np.asarray(s["coords"])[0]) for s in samples if _has_coords(s)]
        return cls(TemplateIndex.build(triples), **kwargs)

    def __len__(self) -> int:
        return len(self.index)

    def chain(self, target_id: str, sequence: str) -> np.ndarray:
        """The prior of a whole chain: its best allowed template hit, gaps from the secondary-structure model."""
        key = (target_id, sequence.upper())
        if key not in self._cache:
            ss = ss_baseline(sequence, BaselineContext())
            hit = self.best_hit(target_id, sequence)
            if hit is None:
                self._cache[key] = ss
            else:
                xyz = np.full((len(sequence), 3), np.nan)
                idx = np.flatnonzero(hit.mapping >= 0)
                xyz[idx] = self._entries[hit.target_id].coords[hit.mapping[idx]]
                self._cache[key] = fill_gaps(xyz, ss)
        return self._cache[key]

    def best_hit(self, target_id: str, sequence: str) -> TemplateHit | None:
        """The best template this query may use, or None."""
        if not self.exclude_self:
            hits = self.index.search(sequence, 1, mode=self.search)
            return hits[0] if hits else None
        own = self._entries.get(target_id)
        indexed = own is not None and own.sequence == sequence.upper()
        for hit in self.index.search(sequence, SEARCH_DEPTH, exclude_id=target_id, mode=self.search):
            if not indexed or hit.identity <= self.max_identity:
                return hit
        return None

    def models(self, sequence: str, n: int, prior: np.ndarray | None = None) -> list[np.ndarray]:
        """Up to ``n`` template models [L, 3] of ``sequence`` by this prior's search, gaps from ``prior``."""
        return self.index.predict(sequence, n, prior=prior, mode=self.search)

    def crop(self, target_id: str, sequence: str, residue_index: np.ndarray) -> np.ndarray:
        """The prior [len(sequence), 3] of ``sequence``, residues ``residue_index`` of the chain ``target_id``.

        A training crop of an indexed chain is cut from the whole chain's prior; any other query is its own chain.
        """
        own = self._entries.get(target_id)
        idx = np.asarray(residue_index, dtype=np.int64)
        if (
            own is not None
            and idx.size == len(sequence)
            and idx.size
            and 0 <= idx.min()
            and idx.max() < len(own.sequence)
        ):
            if "".join(own.sequence[i] for i in idx) == sequence.upper():
                return self.chain(target_id, own.sequence)[idx]
        return self.chain(target_id, sequence)


def _has_coords(sample: dict[str, Any]) -> bool:
    coords = sample.get("coords")
    return coords is not None and len(coords) > 0
