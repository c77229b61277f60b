"""Checkpoint -> `rna_hpc.predict` -> PDB files + submission.csv -> `rna_hpc.evaluate`, on real data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gemmi
from predicting import TARGETS, assert_merged_equals_one_job, run

from rna_hpc.evaluation.structure_io import read_sequences, read_submission

SOURCES = "[model,model_template,ss_model,template,helix]"


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
    for tid in TARGETS:  # ranked from several sources, with their confidences
        line = next(row for row in log.splitlines() if f"{tid}: " in row)
        names = line.split(f"{tid}: ", 1)[1].split(" (confidence")[0].split(", ")
        assert len(names) == 5 and len({n.rsplit("_", 1)[0] for n in names}) >= 2 and "confidence" in line, line

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


def test_prediction_sharded_over_jobs_equals_one_job(checkpoint: Path, inputs: Path, tmp_path: Path) -> None:
    """``-m shards=3`` (three local launcher jobs, one target each) merges into the files one job writes."""
    common = [f"ckpt={checkpoint}", f"input={inputs}", "batch_size=1", "seed=5"]
    one = run("rna_hpc.predict", *common, f"hydra.run.dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    sweep = tmp_path / "sweep"
    sharded = run("rna_hpc.predict", "-m", "hydra/launcher=local", *common, "shards=3", f"hydra.sweep.dir={sweep}")
    assert sharded.returncode == 0, sharded.stdout[-2000:] + sharded.stderr[-3000:]
    assert "rna_hpc: 3 job(s) in 1 submission(s) to local" in sharded.stdout
    assert_merged_equals_one_job(sweep / "results", tmp_path / "one", shards=3)
