"""Where a (re)started job resumes: the newest valid checkpoint of its run identity, and whether it still fits.

Valid means: complete (its sha256 is recorded), unchanged (the file matches that sha256), and loadable with
``weights_only=True``. Scratch checkpoints (``<run dir>/ckpt/*.ckpt``) are recorded by their ``.sha256`` sidecar;
consolidated ones on shared storage by ``manifest.json``. Scratch comes first; shared storage is the fallback
when scratch was purged or the job restarted on another node. An invalid candidate is skipped with a warning
naming it, and the next newest is tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.io import read_sidecar, sha256_file
from rna_hpc.checkpoint.manifest import is_safe_relpath, read_manifest
from rna_hpc.checkpoint.torch_load import safe_torch_load
from rna_hpc.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

RESUME_POLICIES = ("auto", "never", "ignore_config_change")
# the config subtrees a checkpoint stores (RNA3DModule) and resume compares: one list for both
SHAPE_SUBTREES = ("model", "lora", "data.featurizer")
SHAPE_DEFINING = ("model.", "lora.enabled", "lora.r", "lora.target_modules", "data.featurizer.")
NOT_SHAPE_DEFINING = ("model.init_from",)


def shape_config(cfg: Any) -> dict[str, Any]:
    """The ``SHAPE_SUBTREES`` of a composed config as one nested plain dict (``{"model": ..., "data": {...}}``)."""
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}
    for key in SHAPE_SUBTREES:
        node = OmegaConf.select(cfg, key)
        if node is None:
            continue
        *parents, leaf = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return out


def _newest_first(paths: list[Path]) -> list[Path]:
    """Newest modification first; at equal times ``last.ckpt`` first."""
    return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def _scratch_candidates(ckpt_dir: Path) -> list[tuple[Path, str | None]]:
    if not ckpt_dir.is_dir():
        return []
    paths = [p for p in ckpt_dir.glob("*.ckpt") if p.is_file()]
    return [(p, read_sidecar(p)) for p in _newest_first(paths)]


def _shared_candidates(shared_dir: Path) -> list[tuple[Path, str | None]]:
    manifest = read_manifest(shared_dir)
    artifacts = manifest.get("artifacts") if manifest else None
    if not isinstance(artifacts, Mapping):
        return []
    digests = {
        shared_dir / rel: str(entry.get("sha256")) if isinstance(entry, Mapping) else None
        for rel, entry in artifacts.items()
        if rel.endswith(".ckpt") and is_safe_relpath(rel)
    }
    missing = [p for p in digests if not p.is_file()]
    for path in missing:
        log.warning("skipping checkpoint %s: listed in the manifest but missing", path)
    return [(p, digests[p]) for p in _newest_first([p for p in digests if p.is_file()])]


def _problem(path: Path, expected: str | None, recorded_by: str) -> str | None:
    """Why ``path`` cannot be resumed from, or None when it is valid."""
    if expected is None:
        return f"no sha256 recorded in its {recorded_by} (an unfinished write?)"
    if sha256_file(path) != expected:
        return f"sha256 differs from its {recorded_by} (truncated or changed)"
    try:
        checkpoint = safe_torch_load(path)
    except CheckpointError as e:
        return str(e).removeprefix(f"{path}: ")
    if not isinstance(checkpoint, Mapping):
        return "not a checkpoint dictionary"
    return None


def _ckpt_dir(run_dir: Path) -> Path:
    """``<run dir>/ckpt``; a directory that itself holds the ``.ckpt`` files is taken as it is."""
    if not (run_dir / "ckpt").is_dir() and any(run_dir.glob("*.ckpt")):
        return run_dir
    return run_dir / "ckpt"


def find_resume_checkpoint(run_dir: str | Path, shared_dir: str | Path) -> Path | None:
    """The newest valid checkpoint of this run: scratch ``<run_dir>/ckpt`` first, then ``shared_dir``; else None."""
    sources = [
        ("sidecar", _scratch_candidates(_ckpt_dir(Path(run_dir)))),
        ("manifest", _shared_candidates(Path(shared_dir))),
    ]
    for recorded_by, candidates in sources:
        for path, expected in candidates:
            problem = _problem(path, expected, recorded_by)
            if problem is None:
                return path
            log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _shape_defining(key: str) -> bool:
    return key.startswith(SHAPE_DEFINING) and not key.startswith(NOT_SHAPE_DEFINING)


def shape_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: checkpoint <a>, config <b>`` for every shape-defining key that differs (sections present in both)."""
    old, new = _flatten(saved), _flatten(current)
    differences = []
    for key in sorted(set(old) | set(new)):
        section = key.split(".")[0]
        if not _shape_defining(key) or section not in saved or section not in current:
            continue
        missing = "<absent>"
        if old.get(key, missing) != new.get(key, missing):
            differences.append(f"{key}: checkpoint {old.get(key, missing)!r}, config {new.get(key, missing)!r}")
    return differences


def check_config_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], policy: str) -> None:
    """Refuse to resume a checkpoint whose shape-defining config differs, unless ``policy`` is ignore_config_change.

    ``saved`` and ``current`` are config containers of the same layout (``{"model": ..., "lora": ...}``).
    """
    if policy not in RESUME_POLICIES:
        raise ConfigError(f"resume: {policy!r} is not one of {', '.join(RESUME_POLICIES)}")
    differences = shape_differences(saved, current)
    if not differences:
        return
    if policy == "ignore_config_change":
        log.warning("resuming despite config changes (resume=ignore_config_change): %s", "; ".join(differences))
        return
    raise ConfigError(
        [*differences, "resume: the checkpoint has another shape; start a new run or set resume=ignore_config_change"]
    )
