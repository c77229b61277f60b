"""A secondary structure laid out in 3D as C1' coordinates (`ss_model_coords`).

Every stem is an A-form duplex, every loop (hairpin, bulge, internal, multi-way, exterior) is a circle through its
closing pair, its unpaired residues and the first pairs of its child stems, and each child stem grows outward from its
loop. A short relaxation removes the clashes the layout leaves between distant branches, and `compact` then bends the
junctions until the layout is as compact as real chains of its length (a flat layout is about 1.4 times too wide).
Used as the synthetic data generator and as a prior.
"""

from __future__ import annotations

import numpy as np

from rna_hpc.errors import InputError
from rna_hpc.geometry.aform import PAIR_DISTANCE, aform_duplex, aform_helix
from rna_hpc.geometry.superposition import best_rotations

LOOP_STEP = 5.7  # C1'-C1' step in loops
CLASH_DISTANCE = 3.8  # non-neighbour C1' atoms closer than this are pushed apart
_EXTERIOR_GAP = 2 * LOOP_STEP  # virtual chord closing the exterior loop between the chain ends
# Radius of gyration of C1' atoms in real chains, RG_SCALE * L ** RG_EXPONENT A: a least-squares fit in log-log space
# over the train split of the 'Stanford RNA 3D Folding' data, chains of 30 nt or more (`compact` aims at it).
RG_SCALE, RG_EXPONENT = 2.92, 0.50
COMPACT_CONTACT = 4.0  # residues that are not kept at their layout distance stay this far apart when compacted


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _frame(chord: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Orthonormal rows (e1 along chord, e3 along `up` made orthogonal to it, e2 = e3 x e1)."""
    e1 = _unit(chord)
    e3 = up - np.dot(up, e1) * e1
    if np.linalg.norm(e3) < 1e-6:  # degenerate: pick any direction orthogonal to the chord
        e3 = np.cross(e1, [0.0, 0.0, 1.0] if abs(e1[2]) < 0.9 else [1.0, 0.0, 0.0])
    e3 = _unit(e3)
    return np.stack([e1, np.cross(e3, e1), e3])


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of v about a unit axis."""
    return v * np.cos(angle) + np.cross(axis, v) * np.sin(angle) + axis * np.dot(axis, v) * (1 - np.cos(angle))


def check_pairs(pairs: np.ndarray, length: int) -> np.ndarray:
    """Validate a partner array (partner index or -1) of a chain of `length`; returns it as int64."""
    p = np.asarray(pairs, dtype=np.int64).reshape(-1)
    if p.shape[0] != length:
        raise InputError(f"pairs: length {p.shape[0]} differs from the sequence length {length}")
    bad = np.flatnonzero((p < -1) | (p >= length) | (p == np.arange(length)))
    if bad.size:
        raise InputError(f"pairs: residue {bad[0] + 1} has an invalid partner {p[bad[0]]}")
    paired = np.flatnonzero(p >= 0)
    asym = paired[p[p[paired]] != paired]
    if asym.size:
        raise InputError(f"pairs: residue {asym[0] + 1} pairs with {p[asym[0]] + 1}, which does not pair back")
    return p


def stems_from_pairs(pairs: np.ndarray) -> list[tuple[int, int, int]]:
    """Nested stems (i, j, n): i..i+n-1 pair with j..j-n+1; crossing (pseudoknotted) stems are dropped, longest kept."""
    stems: list[list[int]] = []
    for i, j in enumerate(pairs):
        if j <= i:
            continue
        if stems and stems[-1][0] + stems[-1][2] == i and stems[-1][1] - stems[-1][2] == j:
            stems[-1][2] += 1
        else:
            stems.append([int(i), int(j), 1])
    kept: list[tuple[int, int, int]] = []
    for i, j, n in sorted(stems, key=lambda s: (-s[2], s[0])):
        if all(not (a < i < b < j or i < a < j < b) for a, b, _ in kept):
            kept.append((i, j, n))
    return sorted(kept)


def _circle_radius(chords: np.ndarray) -> tuple[float, int]:
    """Radius of the circle on which `chords` close up, and the index of a chord on the major arc (-1 if none)."""
    c_max, big = float(chords.max()), int(chords.argmax())
    others = float(chords.sum() - c_max)
    if others <= c_max:  # cannot close: shrink the longest chord
        chords[big] = c_max = 0.95 * others
    lo = c_max / 2.0
    major = float(np.sum(2 * np.arcsin(np.minimum(chords / (2 * lo), 1.0)))) < 2 * np.pi
    hi = lo * 2.0 + chords.sum()
    for _ in range(100):
        r = 0.5 * (lo + hi)
        arcs = 2 * np.arcsin(np.minimum(chords / (2 * r), 1.0))
        total = arcs.sum() - 2 * arcs[big] + 2 * np.pi if major else arcs.sum()
        if (total > 2 * np.pi) != major:
            lo = r
        else:
            hi = r
    return 0.5 * (lo + hi), big if major else -1


def _circle_points(chords: np.ndarray, e1: np.ndarray, u: np.ndarray, mid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points around a circle: the last chord is the closing one, centred on `mid` along e1; centre towards u."""
    chords = chords.astype(float).copy()
    r, major = _circle_radius(chords)
    arcs = 2 * np.arcsin(np.minimum(chords / (2 * r), 1.0))
    if major >= 0:
        arcs[major] = 2 * np.pi - arcs[major]
    alpha = arcs[-1]
    centre = mid + u * r * np.cos(alpha / 2)
    psi = -alpha / 2 - np.concatenate([[0.0], np.cumsum(arcs[:-1])])
    pts = centre + r * (np.sin(psi)[:, None] * e1 - np.cos(psi)[:, None] * u)
    return pts, centre


class _Layout:
    """Recursive placement of stems and loops into `xyz`."""

    def __init__(self, length: int, stems: list[tuple[int, int, int]], rng: np.random.Generator | None) -> None:
        self.xyz = np.full((length, 3), np.nan)
        self.by_start = {i: (i, j, n) for i, j, n in stems}
        self.rng = rng

    def _tilt(self, scale: float) -> float:
        return 0.0 if self.rng is None else float(self.rng.normal(0.0, scale))

    def loop_points(self, first: int, last: int) -> list[int]:
        """Residues around a loop from `first` to `last`: unpaired ones and the outer pairs of child stems."""
        pts, k = [first], first + 1
        while k < last:
            if k in self.by_start:
                _, j, _ = self.by_start[k]
                pts += [k, j]
                k = j + 1
            else:
                pts.append(k)
                k += 1
        return pts + [last]

    def place_loop(self, pts: list[int], e1: np.ndarray, u: np.ndarray, mid: np.ndarray, close: float) -> None:
        """Put `pts` on a circle (closing chord `close` from last to first), then grow each child stem."""
        u = _rotate(u, e1, np.deg2rad(self._tilt(20.0)))
        chords = [
            PAIR_DISTANCE if a in self.by_start and self.by_start[a][1] == b else LOOP_STEP
            for a, b in zip(pts, pts[1:])
        ]
        xyz, centre = _circle_points(np.array(chords + [close]), e1, u, mid)
        for k, idx in enumerate(pts):
            if np.isnan(self.xyz[idx, 0]):
                self.xyz[idx] = xyz[k]
        for a, b in zip(pts, pts[1:]):
            if a in self.by_start and self.by_start[a][1] == b:
                out = 0.5 * (self.xyz[a] + self.xyz[b]) - centre
                if np.linalg.norm(out) < 1e-6:
                    out = np.cross(e1, u)
                out = _rotate(_unit(out), _unit(self.xyz[b] - self.xyz[a]), np.deg2rad(self._tilt(15.0)))
                self.place_stem(self.by_start[a], out)

    def place_stem(self, stem: tuple[int, int, int], out: np.ndarray) -> None:
        """Build an A-form duplex whose outer pair sits where the loop put it, its axis pointing along `out`."""
        i, j, n = stem
        five, three = aform_duplex(n)
        local = _frame(three[0] - five[0], np.array([0.0, 0.0, 1.0]))
        target = _frame(self.xyz[j] - self.xyz[i], out)
        rot = target.T @ local
        origin = 0.5 * (self.xyz[i] + self.xyz[j]) - rot @ (0.5 * (five[0] + three[0]))
        self.xyz[i : i + n] = five @ rot.T + origin
        self.xyz[j - n + 1 : j + 1] = (three @ rot.T + origin)[::-1]
        a, b = i + n - 1, j - n + 1
        axis = rot[:, 2]
        self.place_loop(
            self.loop_points(a, b),
            _unit(self.xyz[b] - self.xyz[a]),
            axis,
            0.5 * (self.xyz[a] + self.xyz[b]),
            PAIR_DISTANCE,
        )

    def place_exterior(self) -> None:
        """Lay out the exterior loop: one root stem spanning the chain, or a circle closed by a virtual gap."""
        length = self.xyz.shape[0]
        root = self.by_start.get(0)
        if root is not None and root[1] == length - 1:
            self.xyz[0], self.xyz[-1] = [-PAIR_DISTANCE / 2, 0.0, 0.0], [PAIR_DISTANCE / 2, 0.0, 0.0]
            self.place_stem(root, np.array([0.0, 1.0, 0.0]))
            return
        pts, k = [], 0
        while k < length:
            pts.append(k)
            if k in self.by_start:
                pts.append(self.by_start[k][1])
                k = self.by_start[k][1]
            k += 1
        self.place_loop(pts, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.zeros(3), _EXTERIOR_GAP)


def _restraints(xyz: np.ndarray, pairs: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (a, b) and target distances that keep the layout's local geometry: chain, pairs, short contacts."""
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    a, b = np.nonzero(np.triu((d < reach) & (d >= CLASH_DISTANCE), 1) | np.eye(len(xyz), k=1, dtype=bool))
    paired = np.flatnonzero(pairs > np.arange(len(pairs)))
    a, b = np.concatenate([a, paired]), np.concatenate([b, pairs[paired]])
    return a, b, d[a, b]


def _project(x: np.ndarray, a: np.ndarray, b: np.ndarray, goal: np.ndarray) -> None:
    """One Jacobi sweep: move the ends of each index pair (a, b) halfway towards distance `goal`, in place."""
    vec = x[b] - x[a]
    dist = np.maximum(np.linalg.norm(vec, axis=1), 1e-6)
    corr = (0.5 * (dist - goal) / dist)[:, None] * vec
    n = len(x)
    count = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    delta = np.stack([np.bincount(a, corr[:, k], n) - np.bincount(b, corr[:, k], n) for k in range(3)], axis=1)
    x += 1.5 * delta / np.maximum(count, 1)[:, None]


def relax_clashes(xyz: np.ndarray, pairs: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Push apart non-neighbour C1' atoms closer than CLASH_DISTANCE, keeping chain steps, pairs and local contacts."""
    x = xyz.copy()
    n = len(x)
    a, b, target = _restraints(x, pairs, reach=9.0)
    far = np.triu(np.ones((n, n), dtype=bool), 2)
    for _ in range(iterations):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        ca, cb = np.nonzero(far & (d < CLASH_DISTANCE))
        if ca.size == 0:
            break
        goal = np.concatenate([target, np.full(ca.size, CLASH_DISTANCE + 0.2)])
        _project(x, np.concatenate([a, ca]), np.concatenate([b, cb]), goal)
    return x


def native_radius(length: int) -> float:
    """Radius of gyration (A) of C1' atoms that a real chain of ``length`` nt has: RG_SCALE * length ** RG_EXPONENT."""
    return RG_SCALE * length**RG_EXPONENT


def compact(xyz: np.ndarray, stems: list[tuple[int, int, int]], iterations: int = 300, settle: int = 50) -> np.ndarray:
    """Fold a layout towards `native_radius`, keeping each stem rigid and every chain step.

    Each sweep moves every stem as a whole, and every other residue, up to 2 % closer to the centroid while the radius
    of gyration exceeds the native one; pushes residues that are neither chain neighbours nor in one stem at least
    COMPACT_CONTACT apart; restores the chain steps and the stems' own distances; and superposes each stem's layout
    back on it. The last `settle` sweeps only restore. Junctions and loops bend; helices do not.
    """
    x = np.array(xyz, dtype=float)
    n = len(x)
    idx = np.arange(n)
    stem_of = np.full(n, -1)
    for k, (i, j, m) in enumerate(stems):
        stem_of[i : i + m] = stem_of[j - m + 1 : j + 1] = k
    keep = (np.abs(idx[:, None] - idx[None]) == 1) | ((stem_of[:, None] == stem_of[None]) & (stem_of[:, None] >= 0))
    a, b = np.nonzero(np.triu(keep, 1))
    target = np.linalg.norm(x[a] - x[b], axis=1)
    body = np.unique(np.where(stem_of >= 0, stem_of, len(stems) + idx), return_inverse=True)[1]
    rigid = _Shapes(x, stem_of)
    free = np.triu(~keep, 1)
    radius = native_radius(n)
    for _ in range(iterations - settle):
        _pull_in(x, body, radius)
        sq = (x * x).sum(axis=1)
        ca, cb = np.nonzero(free & (sq[:, None] + sq[None] - 2.0 * x @ x.T < COMPACT_CONTACT**2))
        goal = np.concatenate([target, np.full(ca.size, COMPACT_CONTACT)])
        _project(x, np.concatenate([a, ca]), np.concatenate([b, cb]), goal)
        rigid.keep(x)
    for _ in range(settle):
        _project(x, a, b, target)
        rigid.keep(x)
    return x


def _pull_in(x: np.ndarray, body: np.ndarray, radius: float) -> None:
    """Move each rigid body (index `body` per residue) towards the centroid, at most 2 %, while wider than `radius`."""
    centre = x.mean(axis=0)
    rg = float(np.sqrt(((x - centre) ** 2).sum(axis=1).mean()))
    if rg > radius:
        x += ((_group_means(body, x) - centre) * (max(0.98, radius / rg) - 1.0))[body]


def _group_means(group: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[groups, 3] mean of the rows of `v` [n, 3] in each group (`group` [n]: 0..groups-1, every one used)."""
    return np.stack([np.bincount(group, v[:, k]) for k in range(3)], axis=1) / np.bincount(group)[:, None]


class _Shapes:
    """Groups of residues held to their own shape: each superposed (least squares, no reflection) on where it is."""

    def __init__(self, x: np.ndarray, group: np.ndarray) -> None:
        self.members = np.flatnonzero(group >= 0)
        self.group = np.unique(group[self.members], return_inverse=True)[1]
        shape = x[self.members]
        self.shape = shape - _group_means(self.group, shape)[self.group]

    def keep(self, x: np.ndarray) -> None:
        """Replace the members of each group in `x` by the group's shape superposed on them, in place."""
        if self.members.size == 0:
            return
        points = x[self.members]
        centre = _group_means(self.group, points)
        outer = np.einsum("ni,nj->nij", self.shape, points - centre[self.group]).reshape(-1, 9)
        cov = np.stack([np.bincount(self.group, outer[:, k]) for k in range(9)], axis=1).reshape(-1, 3, 3)
        rot = best_rotations(cov)
        x[self.members] = np.einsum("ni,nij->nj", self.shape, rot[self.group]) + centre[self.group]


def ss_model_coords(sequence: str, pairs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """C1' model [L, 3] from a secondary structure: A-form stems, loops as circles, clashes relaxed, then
    compacted to the radius of gyration of real chains (`compact`).

    `pairs[i]` is the partner of residue i or -1. Deterministic when `rng` is None; with an rng, loop planes and
    stem directions are tilted at random (the smoke data generator uses this for variety).
    """
    length = len(sequence)
    p = check_pairs(pairs, length)
    if length == 0:
        return np.zeros((0, 3))
    stems = stems_from_pairs(p)
    if not stems:
        return aform_helix(length)
    layout = _Layout(length, stems, rng)
    layout.place_exterior()
    nested = np.full(length, -1)
    for i, j, n in stems:
        nested[i : i + n] = np.arange(j, j - n, -1)
        nested[j - n + 1 : j + 1] = np.arange(i + n - 1, i - 1, -1)
    xyz = compact(relax_clashes(layout.xyz, nested), stems)
    return xyz - xyz.mean(axis=0)
