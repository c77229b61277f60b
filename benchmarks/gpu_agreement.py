"""Predict the same inputs from the same checkpoint and seed on GPU and on CPU; print the TM-score between the two.

    python benchmarks/gpu_agreement.py --ckpt best.ckpt --input val_sequences.csv --out DIR [--min-tm 0.99]

Runs ``python -m rna_hpc.predict`` twice (``trainer=gpu``, ``trainer=cpu``). For each target and each of its
structures on GPU, the TM-score against the closest CPU structure (the ranking may order near-equal candidates
differently); a target's figure is the lowest of those. Exits 1 when a target is below ``--min-tm``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import REPO


def predict(ckpt: str, inputs: str, out: Path, trainer: str, extra: list[str]) -> Path:
    cmd = [sys.executable, "-m", "rna_hpc.predict", f"ckpt={ckpt}", f"input={inputs}", f"trainer={trainer}"]
    cmd += [f"hydra.run.dir={out}", *extra]
    subprocess.run(cmd, cwd=REPO, check=True)
    return out / "submission.csv"


def agreement(gpu_csv: Path, cpu_csv: Path) -> dict[str, float]:
    """``{target: lowest over the first run's structures of the best TM-score against one of the second's}``."""
    from rna_hpc.evaluation.metrics import tm_score
    from rna_hpc.evaluation.structure_io import read_submission

    gpu, cpu = read_submission(gpu_csv), read_submission(cpu_csv)
    if sorted(gpu) != sorted(cpu):
        raise SystemExit(f"the two predictions hold different targets: {sorted(set(gpu) ^ set(cpu))}")
    return {t: float(min(max(tm_score(g, c) for c in cpu[t][1]) for g in gpu[t][1])) for t in sorted(gpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--min-tm", type=float, default=0.99)
    parser.add_argument("--pair", default="gpu,cpu", help="the two trainer configs compared (cpu,cpu: a dry check)")
    parser.add_argument("overrides", nargs="*", help="predict overrides for both runs (seed=..., candidates=...)")
    args = parser.parse_args()
    first, second = args.pair.split(",")
    a = predict(args.ckpt, args.input, args.out / f"a_{first}", first, args.overrides)
    b = predict(args.ckpt, args.input, args.out / f"b_{second}", second, args.overrides)
    scores = agreement(a, b)
    for target, score in scores.items():
        print(f"  {target:<16} TM({first}, {second}) {score:.4f}")
    low = min(scores.values())
    mean = sum(scores.values()) / len(scores)
    print(f"{first} vs {second} prediction: {len(scores)} targets, lowest TM {low:.4f}, mean {mean:.4f}")
    if low < args.min_tm:
        raise SystemExit(f"{first} and {second} predictions differ: lowest TM-score {low:.4f} < {args.min_tm}")


if __name__ == "__main__":
    main()
