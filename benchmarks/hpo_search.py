"""Staged search with successive halving vs a flat TPE search vs random search, at one budget of trial-epochs.

    python benchmarks/hpo_search.py                     # 5 seeds each, real data, model=tiny, basic launcher
    python benchmarks/hpo_search.py --seeds 0,1 --fraction 0.03 --epochs 4

Each search is ``python -m rna_hpc.train -m hpo=benchmark_<method>`` on the real structures (a small data
fraction), through the basic launcher; all searches run one after the other in this one process (torch and
Lightning are imported once), on one core (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``). The three methods
search the same space (lr, weight decay, warm-up, trunk dropout, gradient clipping) for the highest ``val/tm`` and
get the same plan of ``4 * epochs`` trial-epochs (12 by default):

- staged: ``epochs`` trials x 1 epoch (random) -> 3 trials x ``epochs`` epochs, narrowed around the 2 best, which
  are re-run first; TPE, successive-halving pruner (a pruned trial stops early, so it spends at most the plan);
- flat TPE: 4 trials x ``epochs`` epochs, no pruning;
- random: 4 trials x ``epochs`` epochs, no pruning.

Reported per search: the best ``val/tm`` among trials trained to the full budget, the trial-epochs spent, and the
trial-epochs (in the order trials finished) until a full-budget trial first reached the flat TPE search's final
best of the same seed. The goal: the staged search gets there with at most half of flat TPE's trial-epochs. The
search configs are written to a temporary search path: ``conf/hpo`` is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import default_data_dir
from omegaconf import OmegaConf

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
    flat = [{"name": "flat", "n_trials": 4, "overrides": [f"trainer.max_epochs={epochs}"]}]
    staged = [
        {"name": "explore", "n_trials": epochs, "overrides": ["trainer.max_epochs=1"]},
        {"name": "final", "n_trials": 3, "top_k": 2, "margin": 0.1, "overrides": [f"trainer.max_epochs={epochs}"]},
    ]
    sampler = {"random": "random"}.get(method, "tpe")
    pruner = "successive_halving" if method == "staged" else "nop"
    sweeper: dict[str, Any] = {
        "direction": "maximize",
        "n_jobs": 1,
        "plots": False,
        "params": SPACE,
        "stages": staged if method == "staged" else flat,
        "refit": {"n_seeds": 0},
    }
    if sampler == "tpe":
        sweeper["sampler"] = {"n_startup_trials": epochs if method == "staged" else 2}
    if method == "staged":
        sweeper["pruner"] = {"min_resource": 1, "reduction_factor": 2}
    return {
        "defaults": [
            {"override /hydra/sweeper": "staged_optuna"},
            {"override /hydra/sweeper/sampler": sampler},
            {"override /hydra/sweeper/pruner": pruner},
        ],
        "hydra": {"sweep": {"dir": "${paths.scratch_dir}/hpo/${hydra.sweeper.study_name}"}, "sweeper": sweeper},
        "objective": "val/tm",
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
    best: float | None  # best val/tm among trials trained for the full budget
    spent: int  # trial-epochs actually run (pruned trials stop early)
    trace: list[tuple[int, float | None]]  # (cumulative trial-epochs, full-budget value or None), in finish order
    seconds: float

    def epochs_to_reach(self, target: float) -> int | None:
        return next((spent for spent, value in self.trace if value is not None and value >= target - 1e-12), None)


def run_multirun(overrides: list[str]) -> None:
    """``python -m rna_hpc.train -m <overrides>`` in this process (Hydra's state is reset afterwards)."""
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra

    from rna_hpc import train
    from rna_hpc.config import CONFIG_DIR

    hydra_ = Hydra.create_main_hydra_file_or_module(
        calling_file=None, calling_module="rna_hpc.train", config_path=CONFIG_DIR, job_name="train"
    )
    try:
        hydra_.multirun(config_name="train", task_function=train.main.__wrapped__, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def run_search(method: str, seed: int, args: argparse.Namespace, workdir: Path, search_path: Path) -> Result:
    name = f"{method}-{seed}"
    overrides = [
        *("hydra.mode=MULTIRUN", f"hpo={CONFIG_PREFIX}{method}", f"hydra.searchpath=[file://{search_path}]"),
        *(f"hydra.sweeper.study_name={name}", f"hydra.sweeper.sampler.seed={seed}", "model=tiny", "data=rna3d"),
        *(f"paths.data_dir={args.data_dir}", f"data.fraction={args.fraction}", "data.max_length=40"),
        *("data.val_max_length=64", "data.batch_size=4", "model.generator.n_steps=2", "model.generator.n_samples=1"),
        *(f"paths.scratch_dir={workdir}/scratch", f"paths.shared_dir={workdir}/shared"),
    ]
    log = workdir / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            run_multirun(overrides)
        except (Exception, SystemExit) as e:  # a failed search ends the benchmark, with its log's tail
            print(f"{type(e).__name__}: {e}")
            failed = True
        else:
            failed = False
    seconds = time.perf_counter() - start
    if failed:
        raise SystemExit(f"search {name} failed (log {log}):\n{log.read_text()[-3000:]}")
    return read_result(method, seed, workdir / "scratch" / "hpo" / name, args.epochs, seconds)


def read_result(method: str, seed: int, sweep_dir: Path, epochs: int, seconds: float) -> Result:
    import optuna
    from optuna.trial import TrialState

    from rna_hpc.hpo.storage import make_storage

    storage = make_storage(str(sweep_dir / "optuna.journal"))
    trials = [
        t
        for name in optuna.study.get_all_study_names(storage)
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        if t.state.is_finished()
    ]
    trace, spent = [], 0
    for t in sorted(trials, key=lambda t: t.datetime_complete):
        spent += len(t.intermediate_values)  # every trial job reports each validation, pruned or not
        full = t.state == TrialState.COMPLETE and _full(t, epochs)
        trace.append((spent, t.value if full else None))
    values = [v for _, v in trace if v is not None]
    return Result(method, seed, max(values) if values else None, spent, trace, seconds)


def _full(trial: Any, epochs: int) -> bool:
    """A trial trained for the full budget: its overrides set ``trainer.max_epochs=<epochs>``."""
    return f"trainer.max_epochs={epochs}" in trial.user_attrs.get("overrides", [])


def print_table(results: list[Result]) -> None:
    targets = {r.seed: r.best for r in results if r.method == "flat_tpe"}
    print(f"\n{'method':<9} {'seed':>4} {'best val/tm':>11} {'trial-epochs':>12} {'to flat best':>12} {'wall s':>7}")
    for r in results:
        reach = r.epochs_to_reach(targets[r.seed]) if targets.get(r.seed) is not None else None
        best = "-" if r.best is None else f"{r.best:.4f}"
        print(f"{r.method:<9} {r.seed:>4} {best:>11} {r.spent:>12} {reach or '-':>12} {r.seconds:>7.0f}")
    print(f"\n{'method':<9} {'best val/tm mean +- sd':>23} {'trial-epochs':>12} {'reached flat best':>18}")
    for method in METHODS:
        rs = [r for r in results if r.method == method and r.best is not None]
        if not rs:
            continue
        bests = [r.best for r in rs]
        sd = statistics.stdev(bests) if len(bests) > 1 else 0.0
        reached = [r.epochs_to_reach(targets[r.seed]) for r in rs if targets.get(r.seed) is not None]
        hits = [e for e in reached if e is not None]
        when = f"{len(hits)}/{len(reached)}" + (f", mean {statistics.fmean(hits):.1f} ep" if hits else "")
        spent = statistics.fmean(r.spent for r in rs)
        print(f"{method:<9} {statistics.fmean(bests):>14.4f} +- {sd:.4f} {spent:>12.1f} {when:>18}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--fraction", type=float, default=0.02, help="data.fraction of the training targets")
    p.add_argument("--epochs", type=int, default=3, help="the full budget of one trial (3: 12 trial-epochs each)")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    args = p.parse_args()
    if not (Path(args.data_dir) / "train_sequences.csv").is_file():
        raise SystemExit(f"--data-dir: no train_sequences.csv in {args.data_dir} (set RNA_HPC_DATA)")
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    print(
        f"planned trial-epochs per search: {4 * args.epochs} (staged: {args.epochs} x 1 + 3 x {args.epochs};"
        f" flat TPE and random: 4 x {args.epochs}); data.fraction {args.fraction}, model=tiny, basic launcher",
        flush=True,
    )
    results = []
    start, cpu_start = time.perf_counter(), time.process_time()
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
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"\ntotal: {wall:.0f} s wall, {cpu:.0f} s CPU of this one process (one core)")


if __name__ == "__main__":
    main()
