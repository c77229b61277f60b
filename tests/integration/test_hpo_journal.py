"""16 processes create, report on and tell trials of one journal study at once: nothing lost, nothing doubled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
from hpo_app.harness import HERE
from optuna.trial import TrialState

from rna_hpc.hpo.storage import make_storage

WORKERS = 16
PER_WORKER = 6


def test_sixteen_workers_share_one_journal(tmp_path: Path) -> None:
    spec = str(tmp_path / "shared" / "optuna.journal")
    script = str(HERE / "journal_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, script, spec, "crowd", str(w), str(PER_WORKER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WORKERS)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    claimed = [int(n) for out, _ in outputs for n in out.split()]

    study = optuna.load_study(study_name="crowd", storage=make_storage(spec))
    trials = study.trials
    total = WORKERS * PER_WORKER
    assert len(optuna.get_all_study_summaries(make_storage(spec))) == 1  # 16 racing create_study calls: one study
    assert sorted(t.number for t in trials) == list(range(total))  # no gap, no duplicate number
    assert sorted(claimed) == list(range(total))  # each worker got its own trials
    records = {(t.user_attrs["worker"], t.user_attrs["index"]) for t in trials}
    assert records == {(w, i) for w in range(WORKERS) for i in range(PER_WORKER)}
    for t in trials:
        assert t.state == TrialState.COMPLETE
        assert t.value == 1000 * t.user_attrs["worker"] + t.user_attrs["index"]
        x = t.params["x"]
        assert t.intermediate_values == {0: x, 1: 2 * x}
