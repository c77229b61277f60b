"""Staged search with pruning vs a flat TPE search vs random search, at one fixed budget of trial-epochs.

    python benchmarks/hpo_search.py                     # 3 seeds each, real data, model=tiny, basic launcher
    python benchmarks/hpo_search.py --seeds 0 --fraction 0.03

Each search is ``python -m rna_hpc.train -m hpo=benchmark_<method>`` on the real structures (a small data
fraction), through the basic launcher. The three methods search the same space (lr, weight decay, warm-up, trunk
dropout, gradient clipping) for the lowest ``val/loss`` and get the same plan of 24 trial-epochs:

- staged: 8 trials x 1 epoch -> 4 x 2 epochs around the 3 best -> the 2 best re-run at the full 4 epochs; TPE,
  median pruning (pruned trials stop early, so it spends at most the budget);
- flat TPE: 6 trials x 4 epochs, no pruning;
- random: 6 trials x 4 epochs, no pruning.

Reported per search: the best ``val/loss`` among trials trained to the full budget, the trial-epochs spent, and the
trial-epochs (in the order trials finished) until a full-budget trial first reached the flat TPE search's best of
the same seed. The search configs are written to a temporary search path: ``conf/hpo`` is left alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from common import REPO, default_data_dir
from omegaconf import OmegaConf
from optuna.trial import TrialState

from rna_hpc.hpo.storage import make_storage

METHODS = ("staged", "flat_tpe", "random")
CONFIG_PREFIX = "benchmark_"  # hpo=benchmark_<method>: no name clash with conf/hpo/*.yaml
SPACE = {
    "lr": "tag(log, interval(1e-4, 3e-2))",
    "optim.optimizer.weight_decay": "tag(log, interval(1e-5, 1e-1))",
    "optim.warmup_steps": "range(0, 41, 10)",
    "model.trunk.dropout": "interval(0.0, 0.3)",
    "trainer.gradient_clip_val": "tag(log, interval(0.1, 10.0))",
}


def search_config(method: str, epochs: int) -> dict[str, Any]:
    """The ``hpo/<method>.yaml`` body: the shared space and task, and the method's sampler, pruner and stages."""
    flat = [{"name": "flat", "n_trials": 6, "overrides": [f"trainer.max_epochs={epochs}"]}]
    staged = [
        {"name": "explore", "n_trials": 8, "overrides": ["trainer.max_epochs=1"]},
        {"name": "narrow", "n_trials": 4, "top_k": 3, "enqueue": 2, "overrides": [f"trainer.max_epochs={epochs // 2}"]},
        {"name": "final", "n_trials": 2, "top_k": 2, "overrides": [f"trainer.max_epochs={epochs}"]},
    ]
    sampler = {"random": "random"}.get(method, "tpe")
    defaults = [
        {"override /hydra/sweeper": "staged_optuna"},
        {"override /hydra/sweeper/sampler": sampler},
        {"override /hydra/sweeper/pruner": "median" if method == "staged" else "nop"},
    ]
    sweeper: dict[str, Any] = {
        "direction": "minimize",
        "n_jobs": 1,
        "plots": False,
        "params": SPACE,
        "stages": staged if method == "staged" else flat,
        "refit": {"n_seeds": 0},
    }
    if sampler == "tpe":
        sweeper["sampler"] = {"n_startup_trials": 4 if method == "staged" else 3}
    if method == "staged":
        sweeper["pruner"] = {"n_startup_trials": 3, "n_warmup_steps": 0}
    return {
        "defaults": defaults,
        "hydra": {"sweep": {"dir": "${paths.scratch_dir}/hpo/${hydra.sweeper.study_name}"}, "sweeper": sweeper},
        "objective": "val/loss",
        "checkpoint": {"monitor": "val/loss", "mode": "min"},
        "trainer": {"enable_progress_bar": False, "log_every_n_steps": 1},
    }


def write_configs(search_path: Path, epochs: int) -> None:
    (search_path / "hpo").mkdir(parents=True)
    for method in METHODS:
        text = "# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.create(search_config(method, epochs)))
        (search_path / "hpo" / f"{CONFIG_PREFIX}{method}.yaml").write_text(text)


@dataclass
class Result:
    method: str
    seed: int
    best: float | None  # best val/loss among trials trained for the full budget
    spent: int  # trial-epochs actually run (pruned trials stop early)
    trace: list[tuple[int, float | None]]  # (cumulative trial-epochs, full-budget value or None), in finish order
    seconds: float

    def epochs_to_reach(self, target: float) -> int | None:
        return next((spent for spent, value in self.trace if value is not None and value <= target + 1e-12), None)


def run_search(method: str, seed: int, args: argparse.Namespace, workdir: Path, search_path: Path) -> Result:
    name = f"{method}-{seed}"
    cmd = [
        *(
            sys.executable,
            "-m",
            "rna_hpc.train",
            "-m",
            f"hpo={CONFIG_PREFIX}{method}",
            f"hydra.searchpath=[file://{search_path}]",
        ),
        *(f"hydra.sweeper.study_name={name}", f"hydra.sweeper.sampler.seed={seed}", "model=tiny", "data=rna3d"),
        *(f"paths.data_dir={args.data_dir}", f"data.fraction={args.fraction}", "data.max_length=48"),
        *("data.val_max_length=80", "data.batch_size=4", "model.generator.n_steps=2", "model.generator.n_samples=1"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"search {name} failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return read_result(method, seed, workdir / "outputs" / "scratch" / "hpo" / name, args.epochs, seconds)


def read_result(method: str, seed: int, sweep_dir: Path, epochs: int, seconds: float) -> Result:
    storage = make_storage(str(sweep_dir / "optuna.journal"))
    trials = [
        t
        for name in optuna.study.get_all_study_names(storage)
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        if t.state.is_finished()
    ]
    trace, spent = [], 0
    for t in sorted(trials, key=lambda t: t.datetime_complete):
        spent += len(t.intermediate_values)
        full = t.state == TrialState.COMPLETE and len(t.intermediate_values) == epochs
        trace.append((spent, t.value if full else None))
    values = [v for _, v in trace if v is not None]
    return Result(method, seed, min(values) if values else None, spent, trace, seconds)


def print_table(results: list[Result]) -> None:
    targets = {r.seed: r.best for r in results if r.method == "flat_tpe"}
    print(f"\n{'method':<9} {'seed':>4} {'best val/loss':>13} {'trial-epochs':>12} {'to flat best':>12} {'wall s':>7}")
    for r in results:
        reach = r.epochs_to_reach(targets[r.seed]) if targets.get(r.seed) is not None else None
        best = "-" if r.best is None else f"{r.best:.4f}"
        print(f"{r.method:<9} {r.seed:>4} {best:>13} {r.spent:>12} {reach or '-':>12} {r.seconds:>7.0f}")
    print(f"\n{'method':<9} {'mean best':>10} {'sd':>7} {'mean trial-epochs':>17} {'reached flat best':>17}")
    for method in METHODS:
        rs = [r for r in results if r.method == method and r.best is not None]
        if not rs:
            continue
        bests = [r.best for r in rs]
        sd = statistics.stdev(bests) if len(bests) > 1 else 0.0
        reached = [r.epochs_to_reach(targets[r.seed]) for r in rs if targets.get(r.seed) is not None]
        hits = [e for e in reached if e is not None]
        when = f"{len(hits)}/{len(reached)}" + (f", median {statistics.median(hits):g} ep" if hits else "")
        spent = statistics.fmean(r.spent for r in rs)
        print(f"{method:<9} {statistics.fmean(bests):>10.4f} {sd:>7.4f} {spent:>17.1f} {when:>17}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--fraction", type=float, default=0.04, help="data.fraction of the training targets")
    p.add_argument("--epochs", type=int, default=4, help="the full budget of one trial (4: 24 trial-epochs each)")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    args = p.parse_args()
    if not (Path(args.data_dir) / "train_sequences.csv").is_file():
        raise SystemExit(f"--data-dir: no train_sequences.csv in {args.data_dir} (set RNA_HPC_DATA)")
    staged = 8 + 4 * (args.epochs // 2) + 2 * args.epochs
    print(
        f"planned trial-epochs per search: staged {staged}, flat TPE and random {6 * args.epochs};"
        f" data.fraction {args.fraction}, model=tiny, basic launcher"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        search_path, workdir = Path(tmp) / "conf", Path(tmp) / "work"
        workdir.mkdir()
        write_configs(search_path, args.epochs)
        for seed in map(int, args.seeds.split(",")):
            for method in METHODS:
                results.append(run_search(method, seed, args, workdir, search_path))
                r = results[-1]
                print(f"  {method} seed {seed}: best {r.best} in {r.spent} trial-epochs, {r.seconds:.0f} s", flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
