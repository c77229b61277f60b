"""Checkpoint -> `rna_hpc.predict` -> PDB files + submission.csv -> `rna_hpc.evaluate`, on real data."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import gemmi
import pytest

from rna_hpc.structure_io import read_sequences, read_submission

REPO = Path(__file__).resolve().parents[2]
TARGETS = ["6E8U_B", "7ELP_A", "7EOJ_A"]  # short validation chains
SOURCES = "[model,model_template,ss_model,template,helix]"
# the same data settings and cache folder as test_train_real.py: the real set is featurized once per session
DATA = ["data.max_length=48", "data.val_max_length=56", "data.batch_size=2", "data.val_batch_size=2"]
CACHE = "rna3d_feature_cache"


def run(module: str, *overrides: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, rna3d_dir: Path) -> Path:
    """The best checkpoint of two optimizer steps of the tiny model on a few real training chains."""
    root = tmp_path_factory.mktemp("train")
    proc = run(
        "rna_hpc.train",
        "data=rna3d",
        f"data.dir={rna3d_dir}",
        f"data.cache_dir={tmp_path_factory.getbasetemp() / CACHE}",
        *DATA,
        "data.fraction=0.011",
        "model=tiny",
        "model.generator.n_steps=4",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={root}",
        f"paths.shared_dir={root}/shared",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "ckpt" / "best.ckpt"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, rna3d_dir: Path) -> Path:
    seqs = read_sequences(rna3d_dir / "val_sequences.csv")
    path = tmp_path_factory.mktemp("inputs") / "sequences.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["target_id", "sequence"])
        writer.writerows((t, seqs[t]) for t in TARGETS)
    return path


def test_predict_writes_five_ranked_models_per_target_that_evaluate_scores(
    checkpoint: Path, inputs: Path, rna3d_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "predict"
    proc = run(
        "rna_hpc.predict",
        f"ckpt={checkpoint}",
        f"input={inputs}",
        f"candidates={SOURCES}",
        f"templates_dir={rna3d_dir}",
        f"hydra.run.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seqs = read_sequences(inputs)
    for tid in TARGETS:
        structure = gemmi.read_structure(str(out / "pdb" / f"{tid}.pdb"))
        assert len(structure) == 5, tid  # one MODEL per prediction
        for model in structure:
            residues = [r for chain in model for r in chain]
            assert [r.name for r in residues] == list(seqs[tid]) and all(r.find_atom("C1'", "*") for r in residues)
    submission = read_submission(out / "submission.csv")
    assert sorted(submission) == sorted(TARGETS)
    assert all(models.shape == (5, len(seqs[t]), 3) for t, (_, models) in submission.items())
    with open(out / "submission.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:3] == ["ID", "resname", "resid"] and header[-1] == "z_5"
    log = (out / "predict.log").read_text()
    for tid in TARGETS:  # ranked from several sources, the secondary-structure prior always among them
        line = next(row for row in log.splitlines() if f"{tid}: " in row)
        assert "ss_model_" in line and "confidence" in line, line

    proc = run(
        "rna_hpc.evaluate",
        f"predictions={out / 'submission.csv'}",
        f"labels={rna3d_dir / 'val_labels.csv'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "n_distance_maps=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert result["n_targets"] == 3
    for target in result["targets"]:
        assert math.isfinite(target["model"]["tm"]) and 0.0 < target["model"]["tm"] <= 1.0


def test_predict_config_errors_are_one_line(checkpoint: Path, inputs: Path, tmp_path: Path) -> None:
    proc = run("rna_hpc.predict", f"ckpt={tmp_path / 'absent.ckpt'}", f"input={inputs}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "ckpt: no such checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(
        "rna_hpc.predict",
        f"ckpt={checkpoint}",
        f"input={inputs}",
        "candidates=[model,template]",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 2 and "templates_dir: required" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(
        "rna_hpc.predict", f"ckpt={checkpoint}", f"input={inputs}", "candidates=[magic]", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 2 and "candidates: ['magic']" in proc.stderr
    proc = run(
        "rna_hpc.predict", f"ckpt={checkpoint}", f"input={inputs}", "ss_ensemble=mfe", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 2 and "ss_ensemble: 'mfe' is not one of tilt, boltzmann" in proc.stderr
