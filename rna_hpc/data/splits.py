"""Train/validation assignment: the Kaggle files, a seeded random split, a split file, or a temporal cutoff."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from rna_hpc.data.targets import Skip, enum_value
from rna_hpc.errors import ConfigError, InputError

SPLITS = ("train", "val")


def split_by_seed(ids: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """A random split that depends only on the set of IDs and the seed (at least one of each when possible)."""
    ordered = sorted(ids)
    n = len(ordered)
    n_val = int(round(n * float(val_fraction)))
    if n >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    val = set(np.random.default_rng(int(seed)).permutation(n)[:n_val].tolist())
    return {tid: "val" if i in val else "train" for i, tid in enumerate(ordered)}


def read_split_file(path: str | Path) -> dict[str, str]:
    """``<target_id> <train|val>`` per line ('#' starts a comment)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the split file ({err})") from None
    out: dict[str, str] = {}
    for n, text in enumerate(lines, start=1):
        fields = text.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in SPLITS:
            raise InputError(f"{path}:{n}: expected '<target_id> train|val', found {text.strip()!r}")
        if fields[0] in out:
            raise InputError(f"{path}:{n}: {fields[0]} listed twice")
        out[fields[0]] = fields[1]
    if not out:
        raise InputError(f"{path}: the split file lists no targets")
    return out


def parse_date(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a date YYYY-MM-DD") from None


def split_temporal(dates: dict[str, str | None], cutoff: str) -> tuple[dict[str, str], list[Skip]]:
    """Targets dated after ``cutoff`` go to validation; undated or badly dated targets are skipped."""
    limit = parse_date(cutoff, "data.temporal_cutoff")
    out, skips = {}, []
    for tid, date in dates.items():
        try:
            out[tid] = "val" if parse_date(date or "", tid) > limit else "train"
        except ConfigError:
            skips.append(Skip(tid, "no temporal_cutoff date", detail=f"{date!r} is not YYYY-MM-DD"))
    return out, skips


def assign_splits(
    samples: list[dict[str, Any]], policy: Enum | str, data_cfg: Any, seed: int | None
) -> tuple[dict[str, str], list[Skip]]:
    """target_id -> 'train' | 'val' under ``data.split`` (``seed``: the split seed), and the targets left out."""
    policy = enum_value(policy)
    ids = [s["target_id"] for s in samples]
    if policy == "files":
        if any(s.get("split") not in SPLITS for s in samples):
            raise ConfigError("data.split: 'files' needs the Kaggle layout (data.format=kaggle); use seed or temporal")
        return {s["target_id"]: s["split"] for s in samples}, []
    if policy == "seed":
        if seed is None:
            raise ConfigError("data.split_seed: required by data.split=seed (an integer)")
        return split_by_seed(ids, data_cfg.val_fraction, seed), []
    if policy == "temporal":
        if not data_cfg.temporal_cutoff:
            raise ConfigError("data.temporal_cutoff: required by data.split=temporal (YYYY-MM-DD)")
        dates = {s["target_id"]: s.get("temporal_cutoff") or None for s in samples}
        return split_temporal(dates, data_cfg.temporal_cutoff)
    if policy == "split_file":
        if not data_cfg.split_file:
            raise ConfigError("data.split_file: required by data.split=split_file")
        listed = read_split_file(data_cfg.split_file)
        skips = [Skip(t, "not in the split file", str(data_cfg.split_file)) for t in ids if t not in listed]
        return {t: listed[t] for t in ids if t in listed}, skips
    raise ConfigError(f"data.split: unknown policy {policy!r} (files, seed, temporal, split_file)")


def subsample(items: list[Any], fraction: float, seed: int) -> list[Any]:
    """A deterministic ``fraction`` of ``items`` (at least one), in their original order."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data.fraction: {fraction} must be in (0, 1]")
    if fraction >= 1.0 or not items:
        return list(items)
    k = max(1, int(round(len(items) * fraction)))
    keep = np.sort(np.random.default_rng(int(seed)).permutation(len(items))[:k])
    return [items[i] for i in keep]
