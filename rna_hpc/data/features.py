"""Stage A pair features from ViennaRNA: base-pair probabilities and the MFE pair indicator ([L, L, 2])."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import RNA

from rna_hpc.errors import ConfigError

FEATURIZER_NAME = "vienna_bpp"
PAIR_CHANNELS = 2  # 0: base-pair probability (MFE pairs when use_bpp=false), 1: MFE pair indicator


def _model_details(temperature: float, max_bp_span: int) -> RNA.md:
    md = RNA.md()
    md.temperature = float(temperature)
    md.max_bp_span = int(max_bp_span)
    return md


def dot_bracket_partners(structure: str) -> np.ndarray:
    """[L] int64: the 0-based partner of each residue in a dot-bracket string, -1 if unpaired."""
    partners = np.full(len(structure), -1, dtype=np.int64)
    stack: list[int] = []
    for i, c in enumerate(structure):
        if c == "(":
            stack.append(i)
        elif c == ")":
            j = stack.pop()
            partners[i], partners[j] = j, i
    return partners


def mfe_pairs(sequence: str, temperature: float = 37.0, max_bp_span: int = -1) -> np.ndarray:
    """[L] int64: the 0-based partner of each residue in the MFE structure, -1 if unpaired."""
    if not sequence:
        return np.zeros(0, dtype=np.int64)
    structure, _ = RNA.fold_compound(sequence, _model_details(temperature, max_bp_span)).mfe()
    return dot_bracket_partners(structure)


def sampled_pairs(
    sequence: str, n: int, seed: int = 0, temperature: float = 37.0, max_bp_span: int = -1
) -> list[np.ndarray]:
    """Up to ``n`` distinct secondary structures ([L] partner arrays) other than the MFE one, drawn from the
    Boltzmann ensemble by ViennaRNA's non-redundant stochastic backtracking (the same ones for the same ``seed``).

    Fewer come back when the ensemble holds fewer distinct structures (short or unstructured sequences).
    """
    if not sequence or n < 1:
        return []
    md = _model_details(temperature, max_bp_span)
    md.uniq_ML = 1  # stochastic backtracking needs the unique multiloop decomposition
    fc = RNA.fold_compound(sequence, md)
    mfe_structure, mfe = fc.mfe()
    fc.exp_params_rescale(mfe)
    fc.pf()
    RNA.init_rand(int(seed) & 0x7FFFFFFF)
    structures = [s for s in fc.pbacktrack(n + 1, RNA.PBACKTRACK_NON_REDUNDANT) if s != mfe_structure]
    return [dot_bracket_partners(s) for s in structures[:n]]


def _pair_matrix(partners: np.ndarray) -> np.ndarray:
    n = len(partners)
    out = np.zeros((n, n), dtype=np.float32)
    i = np.flatnonzero(partners >= 0)
    out[i, partners[i]] = 1.0
    return out


def _features(sequence: str, temperature: float, use_bpp: bool, max_bp_span: int) -> np.ndarray:
    n = len(sequence)
    feats = np.zeros((n, n, PAIR_CHANNELS), dtype=np.float32)
    if n == 0:
        return feats
    fc = RNA.fold_compound(sequence, _model_details(temperature, max_bp_span))
    structure, mfe = fc.mfe()
    feats[..., 1] = _pair_matrix(dot_bracket_partners(structure))
    if use_bpp:
        fc.exp_params_rescale(mfe)
        fc.pf()
        upper = np.asarray(fc.bpp(), dtype=np.float32)[1:, 1:]
        feats[..., 0] = np.triu(upper, 1) + np.triu(upper, 1).T
    else:
        feats[..., 0] = feats[..., 1]
    unknown = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8) == ord("N")
    feats[unknown] = 0.0
    feats[:, unknown] = 0.0
    return feats


def _params(cfg: Any) -> dict[str, Any]:
    if cfg.name != FEATURIZER_NAME:
        raise ConfigError(f"data.featurizer.name: unknown featurizer {cfg.name!r} (available: {FEATURIZER_NAME})")
    return {"temperature": float(cfg.temperature), "use_bpp": bool(cfg.use_bpp), "max_bp_span": int(cfg.max_bp_span)}


def stage_a_features(sequence: str, cfg: Any) -> np.ndarray:
    """[L, L, 2] float32: symmetric base-pair probabilities and the MFE pair indicator; rows/cols of N are 0."""
    return _features(sequence, **_params(cfg))


def resolve_workers(workers: int) -> int:
    """``workers``, or the CPU cores this process may use when 0."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where available (workers run ViennaRNA only, as DataLoader workers do); spawn elsewhere."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def featurize_all(sequences: list[str], cfg: Any) -> list[np.ndarray]:
    """Stage A features of every sequence, in order, over a process pool of ``cfg.workers`` (0: all cores)."""
    fn = partial(_features, **_params(cfg))
    workers = min(resolve_workers(int(cfg.workers)), len(sequences))
    if workers <= 1:
        return [fn(s) for s in sequences]
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))  # longest first balances the pool
    chunk = max(1, len(sequences) // (workers * 8))
    with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
        results = list(pool.map(fn, [sequences[i] for i in order], chunksize=chunk))
    out: list[np.ndarray] = [np.empty(0)] * len(sequences)
    for i, feats in zip(order, results, strict=True):
        out[i] = feats
    return out
