"""Training throughput (residues/s) and peak memory of a model config at several lengths.

Each (length, variant) runs in its own process so its peak RSS is its own. Variants: ``plain`` (as configured)
and ``lean`` (activation checkpointing + pair chunking). One training step = forward, all losses, backward and
an AdamW step on one target of the given length (Stage A pair features from ViennaRNA's MFE structure).

    python benchmarks/model_throughput.py                       # model=base, L = 64 128 256 512
    python benchmarks/model_throughput.py --model tiny --lengths 32,64 --steps 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
VARIANTS = {
    "plain": [],
    "lean": ["model.trunk.activation_checkpointing=true", "model.trunk.pair_chunk_size=64"],
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is in KiB on Linux


def model_container(model: str, variant: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}", *VARIANTS[variant]])
    return OmegaConf.to_container(cfg.model, resolve=True)


def one_target_batch(length: int, seed: int = 0) -> dict:
    """A random sequence with its MFE pairs as Stage A features and a random 5.6 A-step chain as the truth."""
    import numpy as np
    import RNA
    import torch

    rng = np.random.default_rng(seed)
    seq = "".join(rng.choice(list("ACGU"), length))
    table = RNA.ptable(RNA.fold(seq)[0])
    pair_feats = torch.zeros(1, length, length, 2)
    for i in range(length):
        if table[i + 1] > 0:
            pair_feats[0, i, table[i + 1] - 1] = 1.0
    steps = rng.normal(size=(length, 3))
    coords = np.cumsum(5.6 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    return {
        "target_id": [f"bench{length}"],
        "seq": torch.tensor([["ACGU".index(c) for c in seq]]),
        "mask": torch.ones(1, length, dtype=torch.bool),
        "coords": torch.tensor(coords, dtype=torch.float32).unsqueeze(0),
        "coord_mask": torch.ones(1, length, dtype=torch.bool),
        "pair_feats": pair_feats,
        "residue_index": torch.arange(length).unsqueeze(0),
        "length": torch.tensor([length]),
    }


def worker(model: str, variant: str, length: int, steps: int, threads: int) -> dict:
    """Time ``steps`` training steps after one warm-up step; report throughput and peak RSS."""
    import torch

    from rna_hpc.model.module import RNA3DModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = RNA3DModule(model=model_container(model, variant)).net.train()
    batch = one_target_batch(length)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    rss_before = peak_rss_mib()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        net.loss(batch, net(batch), {})["loss"].backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {
        "length": length,
        "variant": variant,
        "s_per_step": seconds,
        "residues_per_s": length / seconds,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }


def run_one(args: argparse.Namespace, variant: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--variant", variant, "--length", str(length)]
    cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"length": length, "variant": variant, "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"model={args.model}  steps={args.steps}  torch threads={args.threads}  (batch of 1 target)")
    print(f"{'L':>5} {'variant':<7} {'s/step':>8} {'residues/s':>11} {'peak RSS MiB':>13} {'(at start)':>11}")
    for r in rows:
        if "error" in r:
            print(f"{r['length']:>5} {r['variant']:<7} failed: {r['error']}")
            continue
        print(
            f"{r['length']:>5} {r['variant']:<7} {r['s_per_step']:>8.3f} {r['residues_per_s']:>11.1f}"
            f" {r['peak_rss_mib']:>13.0f} {r['rss_before_mib']:>11.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--lengths", default="64,128,256,512")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="plain", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.variant, args.length, args.steps, args.threads)))
        return
    rows = []
    for length in [int(x) for x in args.lengths.split(",")]:
        for variant in VARIANTS:
            rows.append(run_one(args, variant, length))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table(rows, args)


if __name__ == "__main__":
    main()
