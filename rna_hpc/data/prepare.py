"""Data preparation: parse -> filter -> Stage A features -> cache, then split into train/val sample lists.

``python -m rna_hpc.prepare data=rna3d`` (console script ``rna-hpc-prepare``) builds the cache and prints the
report; training jobs call ``prepare`` and, once the cache exists, only load it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf.errors import OmegaConfBaseException

from rna_hpc.data.cache import FeatureCache, cache_key, cache_key_inputs, stage_to_local
from rna_hpc.data.features import featurize_all
from rna_hpc.data.kaggle import read_split, split_files
from rna_hpc.data.report import Report
from rna_hpc.data.splits import assign_splits
from rna_hpc.data.structures import read_structure_dir, structure_files
from rna_hpc.data.synthetic import SYNTHETIC_VERSION, generate_synthetic
from rna_hpc.data.targets import Skip, Target, enum_value
from rna_hpc.errors import ConfigError, InputError


@dataclass
class PreparedData:
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    report: Report


def _data_dir(data_cfg: Any) -> Path:
    if not data_cfg.dir:
        raise ConfigError(f"data.dir: required by data.format={enum_value(data_cfg.format)}")
    return Path(data_cfg.dir)


def input_files(data_cfg: Any) -> tuple[list[Path], Path | None]:
    """The files whose content shapes the prepared data, and the folder they are named relative to."""
    fmt = enum_value(data_cfg.format)
    if fmt == "synthetic":
        return [], None
    root = _data_dir(data_cfg)
    if fmt == "kaggle":
        return [*split_files(root, "train"), *split_files(root, "val")], root
    if fmt == "structures":
        return structure_files(root), root
    raise ConfigError(f"data.format: unknown format {fmt!r} (synthetic, kaggle, structures)")


def read_targets(data_cfg: Any) -> tuple[list[Target], list[str], list[Skip]]:
    """All targets of the configured source, their Kaggle split tag ('' elsewhere), and the ones skipped."""
    fmt, on_error, unknown = (enum_value(data_cfg.format), data_cfg.on_error, data_cfg.unknown_nucleotide)
    if fmt == "synthetic":
        targets = generate_synthetic(data_cfg.synthetic, float(data_cfg.featurizer.temperature))
        return targets, [""] * len(targets), []
    if fmt == "structures":
        targets, skips = read_structure_dir(_data_dir(data_cfg), unknown, on_error)
        return targets, [""] * len(targets), skips
    targets, tags, skips = [], [], []
    for split in ("train", "val"):
        t, s = read_split(_data_dir(data_cfg), split, on_error, unknown)
        targets += t
        tags += [split] * len(t)
        skips += s
    return targets, tags, skips


def filter_targets(targets: list[Target], data_cfg: Any) -> tuple[list[int], list[Skip]]:
    """Indices of targets long enough and observed enough, and a Skip for each of the others."""
    keep, skips = [], []
    for i, t in enumerate(targets):
        if t.length < int(data_cfg.min_length):
            skips.append(Skip(t.target_id, "shorter than data.min_length", t.source, f"{t.length} nt"))
        elif t.missing_fraction() > float(data_cfg.max_missing_fraction):
            detail = f"{t.missing_fraction():.0%} of C1' missing"
            skips.append(Skip(t.target_id, "above data.max_missing_fraction", t.source, detail))
        else:
            keep.append(i)
    return keep, skips


def build_payload(data_cfg: Any) -> dict[str, Any]:
    """Read, filter and featurize: the cached content (plain tensors, lists and str only)."""
    targets, tags, skips = read_targets(data_cfg)
    keep, filtered = filter_targets(targets, data_cfg)
    feats = featurize_all([targets[i].sequence for i in keep], data_cfg.featurizer)
    samples = []
    for i, pair in zip(keep, feats, strict=True):
        t = targets[i]
        samples.append(
            {
                "target_id": t.target_id,
                "sequence": t.sequence,
                "coords": torch.from_numpy(t.coords),
                "pair_feats": torch.from_numpy(pair),
                "split": tags[i],
                "temporal_cutoff": t.temporal_cutoff or "",
                "source": t.source,
                "notes": list(t.notes),
            }
        )
    skipped = [vars(s) for s in skips + filtered]
    return {"samples": samples, "skipped": skipped, "targets_read": len(targets) + len(skips)}


def _split_seed(data_cfg: Any, seed: int | None) -> int | None:
    """``data.split_seed``, or ``seed`` where it is unset or an unresolvable ``${seed}`` outside a composed config."""
    try:
        value = data_cfg.split_seed
    except OmegaConfBaseException:
        value = None
    if value is None or (isinstance(value, str) and value.startswith("${")):
        return None if seed is None else int(seed)
    return int(value)


def load_or_build(data_cfg: Any) -> tuple[dict[str, Any], Path, bool]:
    """The prepared payload from the cache (built and stored on a miss), its path, and whether it was a hit."""
    files, root = input_files(data_cfg)
    inputs = cache_key_inputs(data_cfg, files, root, generator=SYNTHETIC_VERSION)
    key = cache_key(inputs)
    cache = FeatureCache(data_cfg.cache_dir)
    payload = cache.load(key, inputs)
    hit = payload is not None
    if payload is None:
        payload = build_payload(data_cfg)
        cache.save(key, inputs, payload)
    path = cache.data_path(key)
    if bool(data_cfg.stage_to_local):
        local = FeatureCache(stage_to_local([cache.data_path(key), cache.key_path(key)]))
        payload = local.load(key, inputs) or payload
        path = local.data_path(key)
    return payload, path, hit


def prepare(data_cfg: Any, seed: int | None = None) -> PreparedData:
    """Train/val samples and a Report; InputError when filtering leaves either split empty."""
    start = time.perf_counter()
    payload, path, hit = load_or_build(data_cfg)
    samples = payload["samples"]
    skipped = [Skip(**s) for s in payload["skipped"]]
    assignment, split_skips = assign_splits(samples, data_cfg.split, data_cfg, _split_seed(data_cfg, seed))
    train, val = [], []
    for s in samples:
        tag = assignment.get(s["target_id"])
        if tag == "val" and len(s["sequence"]) > int(data_cfg.val_max_length):
            detail = f"{len(s['sequence'])} nt"
            split_skips.append(Skip(s["target_id"], "validation target above data.val_max_length", s["source"], detail))
        elif tag in ("train", "val"):
            (train if tag == "train" else val).append(s)
    source = f"{enum_value(data_cfg.format)} {data_cfg.dir or ''}".strip()
    report = Report(source, payload["targets_read"], [s["target_id"] for s in train], [s["target_id"] for s in val])
    report.skipped = skipped + split_skips
    report.lengths = [len(s["sequence"]) for s in train + val]
    report.notes = [f"{s['target_id']}: {n}" for s in samples for n in s["notes"]]
    report.cache_path, report.cache_hit = str(path), hit
    report.seconds = time.perf_counter() - start
    if not train or not val:
        empty = "training" if not train else "validation"
        raise InputError(f"{source}: no {empty} targets left after filtering; {_skip_summary(report)}")
    return PreparedData(train, val, report)


def _skip_summary(report: Report) -> str:
    by_reason = report.skipped_by_reason()
    if not by_reason:
        return f"read {report.targets_read} targets, none skipped (check data.split)"
    reasons = ", ".join(f"{reason}: {len(s)}" for reason, s in sorted(by_reason.items()))
    return f"read {report.targets_read}, skipped {reasons}"
