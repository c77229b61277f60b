"""Content-addressed feature cache: ``<cache_dir>/<key>.pt`` (tensors, lists, str) + ``<key>.json`` (key inputs).

key = sha256 of the canonical JSON of every resolved setting that shapes the prepared data plus the sha256 of each
input file. The key inputs are stored beside the data and checked on load; a mismatch or an unreadable file gives a
warning and a rebuild, never a silent reuse. Writes are atomic (temp file in the same directory, fsync, os.replace),
so processes preparing at once end with one valid cache.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import RNA
import torch

from rna_hpc.checkpoint.io import atomic_copy, atomic_write_text, atomic_writer
from rna_hpc.data.targets import VOCAB, DataWarning, enum_value
from rna_hpc.launch.env import node_local_dir

FORMAT_VERSION = 2  # bump when the layout or content of the cached payload changes (2: masked-letter notes)
_SYNTHETIC_KEYS = ("n_targets", "min_length", "max_length", "seed")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def cache_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def cache_key_inputs(data_cfg: Any, files: list[Path], root: Path | None = None, generator: str = "") -> dict:
    """Everything that shapes the prepared data: settings, library versions, input file digests."""
    f, s = data_cfg.featurizer, data_cfg.synthetic
    fmt = enum_value(data_cfg.format)
    inputs = {
        "format_version": FORMAT_VERSION,
        "format": fmt,
        "featurizer": {
            "name": str(f.name),
            "version": int(f.version),
            "temperature": float(f.temperature),
            "use_bpp": bool(f.use_bpp),
            "max_bp_span": int(f.max_bp_span),
        },
        "viennarna": RNA.__version__,
        "vocab": VOCAB,
        "min_length": int(data_cfg.min_length),
        "max_length": int(data_cfg.max_length),
        "val_max_length": int(data_cfg.val_max_length),
        "max_missing_fraction": float(data_cfg.max_missing_fraction),
        "on_error": enum_value(data_cfg.on_error),
        "unknown_nucleotide": enum_value(data_cfg.unknown_nucleotide),
        "files": {_relative(p, root): file_sha256(p) for p in files},
    }
    if fmt == "synthetic":
        inputs["synthetic"] = {k: int(getattr(s, k)) for k in _SYNTHETIC_KEYS}
        inputs["generator"] = generator
    return json.loads(canonical_json(inputs))


def _relative(path: Path, root: Path | None) -> str:
    return path.relative_to(root).as_posix() if root is not None else path.name


class FeatureCache:
    """Prepared payloads stored by key in one directory."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir)

    def data_path(self, key: str) -> Path:
        return self.dir / f"{key}.pt"

    def key_path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def load(self, key: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """The payload stored under ``key`` if it is complete and was built from ``inputs``; else None."""
        data, meta = self.data_path(key), self.key_path(key)
        if not data.exists() and not meta.exists():
            return None
        try:
            stored = json.loads(meta.read_text())
            payload = torch.load(data, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or corrupt file can fail in many ways; none of them is usable
            return _reject(data, f"unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
        if stored != inputs:
            return _reject(data, f"key inputs differ from {meta.name}")
        if not isinstance(payload, dict) or payload.get("key") != key or payload.get("inputs") != inputs:
            return _reject(data, "payload does not match its key")
        return payload

    def save(self, key: str, inputs: dict[str, Any], payload: dict[str, Any]) -> Path:
        """Write the payload, then its key inputs (the key file marks a complete entry)."""
        payload = {**payload, "key": key, "inputs": inputs}
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_writer(self.data_path(key)) as fh:
            torch.save(payload, fh)
        atomic_write_text(self.key_path(key), json.dumps(inputs, indent=1, sort_keys=True))
        return self.data_path(key)


def _reject(path: Path, why: str) -> None:
    warnings.warn(f"{path}: cache entry not used, rebuilding: {why}", DataWarning, stacklevel=3)
    return None


def stage_to_local(paths: list[Path], dest: Path | None = None) -> Path:
    """Copy cache files to node-local disk (atomically; skipped when an identical copy is there); return the dir."""
    dest = dest or node_local_dir() / "rna_hpc_cache"
    dest.mkdir(parents=True, exist_ok=True)
    for src in paths:
        target = dest / src.name
        if target.exists() and target.stat().st_size == src.stat().st_size and file_sha256(target) == file_sha256(src):
            continue
        atomic_copy(src, target)
    return dest
