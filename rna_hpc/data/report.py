"""What data preparation did: targets read, kept, skipped (with reasons), a length histogram, the cache used."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rna_hpc.data.targets import Skip

LENGTH_BINS = (0, 10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000)
EXAMPLES_PER_REASON = 3


def length_histogram(lengths: list[int]) -> list[tuple[str, int]]:
    """Non-empty (label, count) bins such as ('20-29', 145) and ('1000+', 2)."""
    counts = Counter()
    for n in lengths:
        lo = max(b for b in LENGTH_BINS if b <= n)
        counts[lo] += 1
    out = []
    for i, lo in enumerate(LENGTH_BINS):
        label = f"{lo}-{LENGTH_BINS[i + 1] - 1}" if i + 1 < len(LENGTH_BINS) else f"{lo}+"
        if counts[lo]:
            out.append((label, counts[lo]))
    return out


@dataclass
class Report:
    source: str
    targets_read: int = 0
    train_ids: list[str] = field(default_factory=list)
    val_ids: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # kept targets (train and val)
    notes: list[str] = field(default_factory=list)
    cache_path: str = ""
    cache_hit: bool = False
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return len(self.train_ids) + len(self.val_ids)

    def skipped_by_reason(self) -> dict[str, list[Skip]]:
        out: dict[str, list[Skip]] = {}
        for s in self.skipped:
            out.setdefault(s.reason, []).append(s)
        return out

    def format(self) -> str:
        cache = f"cache {'hit' if self.cache_hit else 'built'}: {self.cache_path}" if self.cache_path else "no cache"
        lines = [
            f"data: {self.source} ({self.seconds:.1f} s, {cache})",
            f"targets read: {self.targets_read}, kept: {self.kept} (train {len(self.train_ids)}, "
            f"val {len(self.val_ids)}), skipped: {len(self.skipped)}",
        ]
        for reason, skips in sorted(self.skipped_by_reason().items()):
            lines.append(f"  skipped, {reason}: {len(skips)}")
            lines += [f"    {s.format()}" for s in skips[:EXAMPLES_PER_REASON]]
        hist = " | ".join(f"{label}: {n}" for label, n in length_histogram(self.lengths))
        lines.append(f"length histogram (nt): {hist or 'empty'}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)
