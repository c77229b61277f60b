"""What a checkpoint's candidate pool could reach on the validation split, and how well confidence finds it.

    .venv/bin/python benchmarks/candidate_ceiling.py --ckpt <best.ckpt> [--sources model template ss_model] [--n 5]

Per source: the mean best-of-n TM-score and the TM-score of its first candidate. Then the ceiling, the mean of the
best candidate of all sources together, beside the ranked pool's best of 5 (`rna_hpc.evaluation.ranking`, as
``rna_hpc.predict`` submits it). Last, how each confidence orders the candidates of a target: mean Spearman
correlation with TM-score, and the mean TM-score of its top choice. ``consensus`` is the ranking's score (agreement
with the other sources); ``distogram`` is the mean log-likelihood, under the model's distogram, of a candidate's
pair distances (pairs at least 3 apart in sequence). The candidates are built as ``rna_hpc.predict`` builds them
(`rna_hpc.model.candidates.candidate_pools`, template hits from the train split).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import default_data_dir

from rna_hpc.data.datamodule import RNADataModule
from rna_hpc.data.dataset import collate
from rna_hpc.data.fasta import read_predict_sequences
from rna_hpc.evaluation.metrics import best_tm
from rna_hpc.evaluation.ranking import consensus_scores, rank_candidates, similarity_matrix
from rna_hpc.evaluation.references import load_references
from rna_hpc.job.predict import load_template_prior, shard_batches
from rna_hpc.model.build import build_module_from_checkpoint
from rna_hpc.model.candidates import candidate_pools
from rna_hpc.model.coords import pair_distances
from rna_hpc.model.heads import DistogramHead

MIN_SEPARATION = 3  # pairs closer in sequence are fixed by the chain, whatever the fold
BATCH = 4


def distogram_scores(logits: torch.Tensor, head: DistogramHead, candidates: np.ndarray) -> np.ndarray:
    """[N] mean log-probability, under distogram ``logits`` [L, L, bins], of each candidate's [N, L, 3] distances,
    binned as the distogram loss bins the truth."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    i, j = torch.triu_indices(len(logp), len(logp), MIN_SEPARATION)
    bins = head.bin_of(pair_distances(torch.as_tensor(candidates, dtype=torch.float32)))[:, i, j]
    return logp[i, j].gather(-1, bins.T).mean(0).numpy()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two [N] arrays (nan when either is constant)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per-target figures, averaged: {row: {column: mean}}."""
    module = build_module_from_checkpoint(str(args.ckpt))
    templates = load_template_prior(str(args.data_dir), args.template_search)
    module.net.attach_templates(templates)
    refs = load_references(args.data_dir / "val_labels.csv")
    sequences = read_predict_sequences(str(args.data_dir / "val_sequences.csv"), 10**9, True, "mask")
    data, head = RNADataModule(seed=args.seed), module.net.heads.distogram
    rows: dict[str, dict[str, list[float]]] = {}

    def add(row: str, column: str, value: float) -> None:
        rows.setdefault(row, {}).setdefault(column, []).append(value)

    for b, part in shard_batches(len(sequences), BATCH, shard=0, shards=1):
        batch = collate(data.predict_samples(sequences[part]))
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + b)
        pools = candidate_pools(module, batch, args.sources, args.n, templates, generator, args.seed)
        with torch.no_grad():
            logits = module.net(batch)["distogram_logits"]
        for k, (tid, pool) in enumerate(zip(batch["target_id"], pools, strict=True)):
            coords, sources, reference = np.stack(pool.coords), np.array(pool.sources), refs[tid][1]
            tm = np.array([best_tm(c[None], reference) for c in coords])
            for source in dict.fromkeys(pool.sources):
                add(source, "best", tm[sources == source].max())
                add(source, "first", tm[sources == source][0])
            add("all sources (ceiling)", "best", tm.max())
            ranked = rank_candidates(coords, pool.names, 5, pool.sources)
            add("ranked pool (5 kept)", "best", best_tm(ranked.coords, reference))
            n = int(batch["mask"][k].sum())
            confidence = {
                "consensus": consensus_scores(similarity_matrix(coords), pool.sources),
                "distogram": distogram_scores(logits[k, :n, :n], head, coords),
            }
            for name, score in confidence.items():
                add(f"confidence: {name}", "spearman", spearman(score, tm))
                add(f"confidence: {name}", "first", tm[int(np.argmax(score))])
    return {row: {col: float(np.nanmean(v)) for col, v in cols.items()} for row, cols in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a checkpoint of rna_hpc.train (best.ckpt)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--sources", nargs="+", default=["model", "template", "ss_model", "fold", "model_template"])
    parser.add_argument("--n", type=int, default=5, help="candidates per source")
    parser.add_argument("--template-search", default="structure", help="sequence | structure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args)
    print(f"{'':26s} {'best':>8s} {'first':>8s} {'spearman':>8s}")
    for row, cols in result.items():
        cells = " ".join(f"{cols[c]:8.3f}" if c in cols else f"{'':8s}" for c in ("best", "first", "spearman"))
        print(f"{row:26s} {cells}")


if __name__ == "__main__":
    main()
