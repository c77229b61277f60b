"""One of many processes sharing a journal study: ``python journal_worker.py STORAGE STUDY WORKER N``.

Creates (or loads) the study, then N times: ask a trial, report two intermediate values through
``report_and_should_prune``, tag it with its worker, tell a value. Prints the numbers of its trials.
"""

from __future__ import annotations

import sys

import optuna

from rna_hpc.hpo.pruning import report_and_should_prune
from rna_hpc.hpo.storage import make_storage


def main() -> None:
    spec, name, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=make_storage(spec), direction="maximize", load_if_exists=True)
    numbers = []
    for i in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("index", i)
        cfg = {"study_name": name, "storage": spec, "number": trial.number}
        for step in range(2):
            report_and_should_prune(cfg, step, x * (step + 1))
        study.tell(trial, 1000 * worker + i)
        numbers.append(trial.number)
    print(" ".join(map(str, numbers)))


if __name__ == "__main__":
    main()
