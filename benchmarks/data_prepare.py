"""Data preparation time on the shared dataset: cold (parse + Stage A features + cache write) vs cached (load).

    python benchmarks/data_prepare.py [--data-dir DIR] [--workers N] [--repeats R]

The data folder defaults to $RNA_HPC_DATA, else ../shared/data/rna3d next to the repository.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import default_data_dir

from rna_hpc.config.schema import DataConfig, FeaturizerConfig
from rna_hpc.data.features import resolve_workers
from rna_hpc.data.prepare import prepare


def timed_prepare(cfg: DataConfig) -> tuple[float, object]:
    start = time.perf_counter()
    data = prepare(cfg, seed=0)
    return time.perf_counter() - start, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--workers", type=int, default=0, help="featurizer processes (0: all cores)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rna_hpc_bench_") as tmp:
        cold, cached = [], []
        for r in range(args.repeats):
            cfg = DataConfig(
                format="kaggle",
                dir=str(args.data_dir),
                cache_dir=str(Path(tmp) / f"cache{r}"),
                split="files",
                featurizer=FeaturizerConfig(workers=args.workers),
            )
            seconds, data = timed_prepare(cfg)
            cold.append(seconds)
            cached.append(timed_prepare(cfg)[0])
        size = sum(p.stat().st_size for p in Path(tmp).glob("cache0/*"))
    report = data.report  # type: ignore[attr-defined]
    print(f"dataset: {args.data_dir} ({report.targets_read} targets read, {report.kept} kept)")
    print(f"featurizer workers: {resolve_workers(args.workers)}; repeats: {args.repeats}")
    print(f"cold   (parse + features + write): median {statistics.median(cold):7.3f} s  min {min(cold):7.3f} s")
    print(f"cached (load + split):             median {statistics.median(cached):7.3f} s  min {min(cached):7.3f} s")
    print(f"speed-up: {statistics.median(cold) / statistics.median(cached):.1f}x; cache size {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
