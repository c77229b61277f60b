"""Targets (a sequence and its C1' coordinates), the nucleotide vocabulary and sequence normalization."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from rna_hpc.errors import InputError

VOCAB = "ACGUN"
UNKNOWN_INDEX = VOCAB.index("N")
PAD_INDEX = UNKNOWN_INDEX  # padding embeds as unknown; `mask` tells them apart
_LOOKUP = np.full(256, UNKNOWN_INDEX, dtype=np.int64)
for _i, _c in enumerate(VOCAB):
    _LOOKUP[ord(_c)] = _i


class DataWarning(UserWarning):
    """Input that was accepted after a change (T read as U, a cache rebuilt, a sequence cropped)."""


@dataclass
class Target:
    """One RNA chain: its full sequence and K reference structures of C1' coordinates (NaN = missing)."""

    target_id: str
    sequence: str
    coords: np.ndarray  # [K, L, 3] float32, NaN where the C1' was not observed
    temporal_cutoff: str | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)  # accepted oddities (e.g. unmapped modified residues)

    @property
    def length(self) -> int:
        return len(self.sequence)

    def coord_mask(self, k: int = 0) -> np.ndarray:
        """[L] bool: residues with an observed C1' in reference structure ``k``."""
        return np.isfinite(self.coords[k]).all(axis=-1)

    def missing_fraction(self, k: int = 0) -> float:
        return float(1.0 - self.coord_mask(k).mean()) if self.length else 1.0


@dataclass
class Skip:
    """A target left out, with the reason (a short category) and where (file:line or file:chain)."""

    target_id: str
    reason: str
    where: str = ""
    detail: str = ""

    def format(self) -> str:
        head = f"{self.where}: " if self.where else ""
        tail = f" ({self.detail})" if self.detail else ""
        return f"{head}{self.target_id}: {self.reason}{tail}"


class TargetError(InputError):
    """A problem with one target: raised, or turned into a ``Skip`` when ``data.on_error=skip``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def enum_value(value: Enum | str) -> str:
    """The plain string of a config enum (configs hand over members or their values)."""
    return str(value.value if isinstance(value, Enum) else value)


def encode(sequence: str) -> np.ndarray:
    """Map a normalized sequence to int64 indices of ``VOCAB`` (anything else is N)."""
    raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
    return _LOOKUP[raw]


MASK_NOTE_POSITIONS = 20  # positions listed in a target's note; the count covers all of them


def masked_letters(seq: str) -> list[tuple[int, str]]:
    """(residue number, letter) of each letter that masking turns into N: not A C G U, not T (read as U), not N."""
    clean = "".join(seq.split()).upper()
    return [(i + 1, c) for i, c in enumerate(clean) if c not in "ACGUTN"]


def masked_note(seq: str) -> list[str]:
    """The prepare-report note for a raw sequence whose unknown letters are masked as N ([] when there are none)."""
    found = masked_letters(seq)
    if not found:
        return []
    shown = ", ".join(f"{c} at {i}" for i, c in found[:MASK_NOTE_POSITIONS])
    more = ", ..." if len(found) > MASK_NOTE_POSITIONS else ""
    return [f"unknown nucleotides masked as N: {len(found)} ({shown}{more})"]


def normalize_sequence(seq: str, unknown: Enum | str, where: str) -> str:
    """Upper-case ``seq``; T -> U (with a warning); N and other letters -> N if ``unknown`` is mask, else InputError.

    Masking says nothing here: readers of training data put ``masked_note(seq)`` into the target's notes.
    """
    out = "".join(seq.split()).upper()
    if "T" in out:
        warnings.warn(f"{where}: T read as U", DataWarning, stacklevel=2)
        out = out.replace("T", "U")
    bad = [i for i, c in enumerate(out) if c not in "ACGU"]
    if not bad:
        return out
    if enum_value(unknown) == "mask":
        chars = list(out)
        for i in bad:
            chars[i] = "N"
        return "".join(chars)
    i = bad[0]
    raise TargetError(
        f"{where}: unknown nucleotide {out[i]!r} at residue {i + 1} ({len(bad)} in all); "
        "allowed A C G U (T read as U), or set data.unknown_nucleotide=mask",
        reason="unknown nucleotide",
    )
