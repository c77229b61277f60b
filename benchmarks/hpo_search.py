"""Costs of the search machinery: shared-storage throughput with concurrent workers, and the per-epoch cost of a
pruning report as the study grows.

    python benchmarks/hpo_search.py                          # journal + sqlite, 1/4/16 workers, 100/1000 trials
    python benchmarks/hpo_search.py --workers 1,8 --trials 5 --study-sizes 100

Throughput: each worker process asks a trial, reports 2 intermediate values through ``report_and_should_prune``
(as a trial job does per epoch) and tells a value, ``--trials`` times. Report latency: a fresh process (a new job)
opens a study that already holds N finished trials; its first report replays the storage, the later ones do not.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from rna_hpc.hpo.pruning import report_and_should_prune
from rna_hpc.hpo.storage import make_storage

PRUNER = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5}


def worker(spec: str, name: str, n: int) -> None:
    """One worker process: n x (ask, 2 reports, tell)."""
    study = optuna.load_study(study_name=name, storage=make_storage(spec))
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        cfg = {"study_name": name, "storage": spec, "number": trial.number}
        if not any(report_and_should_prune(cfg, step, x * (step + 1)) for step in range(2)):
            study.tell(trial, x)


def new_study(spec: str, name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=make_storage(spec), direction="maximize")
    study.set_user_attr("pruner", PRUNER)
    return study


def throughput(spec: str, workers: int, trials: int) -> float:
    """Seconds for ``workers`` processes to run ``trials`` trials each (process start included)."""
    name = f"w{workers}"
    new_study(spec, name)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", spec, name, str(trials)]) for _ in range(workers)]
    if any(p.wait() for p in procs):
        raise SystemExit("a worker failed")
    elapsed = time.perf_counter() - start
    assert len(optuna.load_study(study_name=name, storage=make_storage(spec)).trials) == workers * trials
    return elapsed


def fill(spec: str, name: str, n: int) -> None:
    study = new_study(spec, name)
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        for step in range(3):
            trial.report(i * 0.001 + step, step)
        study.tell(trial, float(i))


def latency(spec: str, name: str, reports: int) -> None:
    """Run in a fresh process: print first-report and steady-report milliseconds."""
    study = optuna.load_study(study_name=name, storage=make_storage(spec))
    number = study.ask().number
    cfg = {"study_name": name, "storage": spec, "number": number}
    times = []
    for step in range(reports):
        start = time.perf_counter()
        report_and_should_prune(cfg, step, 10.0 + step)
        times.append(1000 * (time.perf_counter() - start))
    print(f"{times[0]:.1f} {statistics.median(times[1:]):.1f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--worker", "--latency"):
        mode, spec, name, n = sys.argv[1:5]
        (worker if mode == "--worker" else latency)(spec, name, int(n))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,4,16")
    p.add_argument("--trials", type=int, default=5, help="trials per worker")
    p.add_argument("--study-sizes", default="100,1000")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        specs = {"journal": str(Path(tmp) / "optuna.journal"), "sqlite": f"sqlite:///{tmp}/optuna.db"}
        print(f"{'storage':<8} {'workers':>7} {'trials':>6} {'seconds':>8} {'trials/s':>8}")
        for label, spec in specs.items():
            for w in map(int, args.workers.split(",")):
                sec = throughput(spec, w, args.trials)
                print(f"{label:<8} {w:>7} {w * args.trials:>6} {sec:>8.2f} {w * args.trials / sec:>8.1f}")
        print(f"\n{'storage':<8} {'trials in study':>15} {'first report ms':>15} {'next reports ms':>15}")
        for label, spec in specs.items():
            for n in map(int, args.study_sizes.split(",")):
                fill(spec, f"n{n}", n)
                out = subprocess.run(
                    [sys.executable, __file__, "--latency", spec, f"n{n}", "6"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                print(f"{label:<8} {n:>15} {out[0]:>15} {out[1]:>15}")


if __name__ == "__main__":
    main()
