"""Template-based modelling: find similar chains of known structure and copy their C1' coordinates.

`TemplateIndex.search` pre-filters candidates by shared k-mers and ranks them by a semiglobal alignment (``mode=
"sequence"``), or also considers every template of similar length and ranks by identity plus the agreement of the
query's predicted pairs with the template's observed ones (``mode="structure"``, `rna_hpc.evaluation.structure_search`);
`TemplateIndex.predict` copies coordinates through each alignment and fills the gaps along the chain.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from rna_hpc.evaluation.alignment import align, sequence_scores
from rna_hpc.evaluation.metrics import kabsch
from rna_hpc.evaluation.structure_search import (
    LENGTH_RATIO,
    observed_pairs,
    pair_agreement,
    predicted_pairs,
    structure_scores,
)
from rna_hpc.geometry import LOOP_STEP, aform_helix

_MATCH, _MISMATCH, _GAP_OPEN, _GAP_EXTEND = 2.0, -3.0, -5.0, -2.0
SEARCH_MODES = ("sequence", "structure")


@dataclass(frozen=True)
class TemplateHit:
    """One template for a query: `mapping[i]` is the template residue aligned to query residue i, or -1."""

    target_id: str
    score: float
    identity: float  # identical aligned residues / query length
    coverage: float  # aligned residues with coordinates / query length
    mapping: np.ndarray


@dataclass(frozen=True)
class _Entry:
    target_id: str
    sequence: str
    coords: np.ndarray


def _kmers(sequence: str, k: int) -> set[str]:
    return {sequence[i : i + k] for i in range(len(sequence) - k + 1)}


class TemplateIndex:
    """Chains of known structure, searchable by sequence."""

    def __init__(self, entries: list[_Entry], k: int, max_candidates: int) -> None:
        self.entries = entries
        self.k = k
        self.max_candidates = max_candidates
        self._by_kmer: dict[str, list[int]] = defaultdict(list)
        for n, e in enumerate(entries):
            for km in _kmers(e.sequence, k):
                self._by_kmer[km].append(n)
        self._cache: dict[tuple[str, str | None, str], list[TemplateHit]] = {}
        self._pairs: dict[int, np.ndarray] = {}

    @classmethod
    def build(cls, targets: list[tuple[str, str, np.ndarray]], k: int = 5, max_candidates: int = 40) -> TemplateIndex:
        """Index `(target_id, sequence, coords [L, 3] with NaN = missing)` triples."""
        entries = []
        for tid, seq, xyz in targets:
            xyz = np.asarray(xyz, dtype=float)
            if xyz.shape != (len(seq), 3):
                raise ValueError(f"template {tid}: coordinates {xyz.shape} do not match its length {len(seq)}")
            entries.append(_Entry(tid, seq.upper(), xyz))
        return cls(entries, k, max_candidates)

    def __len__(self) -> int:
        return len(self.entries)

    def _candidates(self, sequence: str, exclude_id: str | None) -> list[int]:
        counts: dict[int, int] = defaultdict(int)
        for km in _kmers(sequence, self.k):
            for n in self._by_kmer.get(km, ()):
                counts[n] += 1
        ranked = sorted(counts, key=lambda n: (-counts[n], n))
        return [n for n in ranked if self.entries[n].target_id != exclude_id][: self.max_candidates]

    def _similar_length(self, sequence: str, exclude_id: str | None) -> list[int]:
        n = len(sequence)
        return [
            k
            for k, e in enumerate(self.entries)
            if e.target_id != exclude_id and n / LENGTH_RATIO <= len(e.sequence) <= n * LENGTH_RATIO
        ]

    def template_pairs(self, n: int) -> np.ndarray:
        """The pairing observed in entry `n`'s C1' trace (`observed_pairs`, cached)."""
        if n not in self._pairs:
            self._pairs[n] = observed_pairs(self.entries[n].sequence, self.entries[n].coords)
        return self._pairs[n]

    def _hit(self, sequence: str, entry: _Entry, subst: np.ndarray | None = None) -> TemplateHit:
        subst = sequence_scores(sequence, entry.sequence, _MATCH, _MISMATCH) if subst is None else subst
        mapping = align(subst, _GAP_OPEN, _GAP_EXTEND, free_ends=True)
        idx = np.flatnonzero(mapping >= 0)
        score = float(subst[idx, mapping[idx]].sum())
        same = sum(sequence[i] == entry.sequence[mapping[i]] for i in idx)
        resolved = np.isfinite(entry.coords[mapping[idx]]).all(axis=1).sum() if idx.size else 0
        n = max(len(sequence), 1)
        return TemplateHit(entry.target_id, score, same / n, float(resolved) / n, mapping)

    def _structure_hit(self, sequence: str, n: int) -> TemplateHit:
        """A hit aligned on nucleotides and pairing states, scored by identity + conserved pair fraction."""
        entry, q_pairs, t_pairs = self.entries[n], np.array(predicted_pairs(sequence)), self.template_pairs(n)
        hit = self._hit(sequence, entry, structure_scores(sequence, entry.sequence, q_pairs, t_pairs))
        agreement = pair_agreement(hit.mapping, q_pairs, t_pairs)
        return TemplateHit(hit.target_id, hit.identity + agreement, hit.identity, hit.coverage, hit.mapping)

    def search(
        self, sequence: str, k: int = 5, exclude_id: str | None = None, mode: str = "sequence"
    ) -> list[TemplateHit]:
        """The `k` best templates for `sequence`, never `exclude_id` (the query's own entry), ranked by alignment
        score (``mode="sequence"``) or by identity plus conserved pair fraction (``mode="structure"``)."""
        if mode not in SEARCH_MODES:
            raise ValueError(f"template search {mode!r} is not one of {', '.join(SEARCH_MODES)}")
        sequence = sequence.upper()
        key = (sequence, exclude_id, mode)
        if key not in self._cache:
            if mode == "sequence":
                hits = [self._hit(sequence, self.entries[n]) for n in self._candidates(sequence, exclude_id)]
            else:
                pool = self._candidates(sequence, exclude_id) + self._similar_length(sequence, exclude_id)
                hits = [self._structure_hit(sequence, n) for n in dict.fromkeys(pool)]
            hits = [h for h in hits if h.coverage > 0]
            self._cache[key] = sorted(hits, key=lambda h: (-h.score, h.target_id))
        return self._cache[key][:k]

    def predict(
        self,
        sequence: str,
        n: int = 5,
        exclude_id: str | None = None,
        prior: np.ndarray | None = None,
        mode: str = "sequence",
    ) -> list[np.ndarray]:
        """Up to `n` models [L, 3], one per template hit; gaps filled from `prior` [L, 3] if given, else bridged."""
        out = []
        coords = {e.target_id: e.coords for e in self.entries}
        for hit in self.search(sequence, n, exclude_id, mode):
            xyz = np.full((len(sequence), 3), np.nan)
            idx = np.flatnonzero(hit.mapping >= 0)
            xyz[idx] = coords[hit.target_id][hit.mapping[idx]]
            out.append(fill_gaps(xyz, prior))
        return out


def _bridge(a: np.ndarray, b: np.ndarray, n: int, away: np.ndarray) -> np.ndarray:
    """`n` points from a to b: a straight line, bowed out along `away` when the path would be too short."""
    s = np.arange(1, n + 1) / (n + 1)
    chord = b - a
    side = away - np.dot(away, chord) / max(np.dot(chord, chord), 1e-9) * chord
    side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-6 else np.array([0.0, 0.0, 1.0])
    want = (n + 1) * LOOP_STEP
    lo, hi = 0.0, want
    for _ in range(50):
        height = 0.5 * (lo + hi)
        pts = a + s[:, None] * chord + (height * np.sin(np.pi * s))[:, None] * side
        path = np.vstack([a, pts, b])
        if np.linalg.norm(np.diff(path, axis=0), axis=1).sum() < want:
            lo = height
        else:
            hi = height
    return pts


def _extend(end: np.ndarray, prev: np.ndarray, centre: np.ndarray, n: int) -> np.ndarray:
    """`n` points continuing a chain end outwards, LOOP_STEP apart."""
    out = end - centre
    step = end - prev
    direction = out / max(np.linalg.norm(out), 1e-9) + step / max(np.linalg.norm(step), 1e-9)
    if np.linalg.norm(direction) < 1e-6:
        direction = np.array([1.0, 0.0, 0.0])
    direction /= np.linalg.norm(direction)
    return end + LOOP_STEP * np.arange(1, n + 1)[:, None] * direction


def _segments(missing: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _graft(xyz: np.ndarray, prior: np.ndarray, start: int, stop: int, known: np.ndarray) -> None:
    """Copy prior[start:stop] into xyz, superposed on up to 4 known residues either side of the gap."""
    anchors = np.concatenate([known[known < start][-4:], known[known >= stop][:4]])
    if anchors.size >= 3:
        rot, t = kabsch(prior[anchors], xyz[anchors])
    else:
        rot, t = np.eye(3), (xyz[anchors] - prior[anchors]).mean(axis=0)
    xyz[start:stop] = prior[start:stop] @ rot.T + t


def fill_gaps(xyz: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """Fill missing (NaN) C1' rows along the chain.

    With a `prior` model [L, 3], gaps longer than 2 residues and chain ends are taken from it, superposed on the
    residues flanking each gap; the rest are bridged between their ends, or extended outwards at chain ends.
    """
    xyz = np.array(xyz, dtype=float)
    known = np.flatnonzero(np.isfinite(xyz).all(axis=1))
    if known.size == 0:
        return np.array(prior, dtype=float) if prior is not None else aform_helix(len(xyz))
    if prior is not None:
        for start, stop in _segments(~np.isfinite(xyz).all(axis=1)):
            if stop - start > 2 or start == 0 or stop == len(xyz):
                _graft(xyz, np.asarray(prior, dtype=float), start, stop, known)
        known = np.flatnonzero(np.isfinite(xyz).all(axis=1))
    centre = xyz[known].mean(axis=0)
    for a, b in zip(known[:-1], known[1:]):
        if b - a > 1:
            mid = 0.5 * (xyz[a] + xyz[b])
            xyz[a + 1 : b] = _bridge(xyz[a], xyz[b], b - a - 1, mid - centre)
    first, last = known[0], known[-1]
    if first > 0:
        prev = xyz[first + 1] if first < last else xyz[first] + np.array([LOOP_STEP, 0.0, 0.0])
        xyz[:first] = _extend(xyz[first], prev, centre, first)[::-1]
    if last < len(xyz) - 1:
        prev = xyz[last - 1] if first < last else xyz[last] - np.array([LOOP_STEP, 0.0, 0.0])
        xyz[last + 1 :] = _extend(xyz[last], prev, centre, len(xyz) - 1 - last)
    return xyz
