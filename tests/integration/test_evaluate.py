"""`rna_hpc.evaluate` end to end on real validation targets, as the pipeline function and as the Hydra command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rna_hpc.errors import InputError
from rna_hpc.evaluation.pipeline import evaluate
from rna_hpc.evaluation.structure_io import read_coordinate_csv, write_submission
from rna_hpc.geometry import aform_helix

REPO = Path(__file__).resolve().parents[2]
TARGETS = ["6E8U_B", "7EOJ_A", "R1108"]  # short val chains; R1108 has two reference structures


@pytest.fixture()
def helix_submission(tmp_path: Path, rna3d_dir: Path) -> Path:
    refs = read_coordinate_csv(rna3d_dir / "val_labels.csv")
    entries = [(t, refs[t][0], np.stack([aform_helix(len(refs[t][0]))] * 5)) for t in TARGETS]
    path = tmp_path / "submission.csv"
    write_submission(path, entries)
    return path


def test_evaluate_helix_submission(tmp_path: Path, rna3d_dir: Path, helix_submission: Path, capsys) -> None:
    out = tmp_path / "eval"
    result = evaluate(helix_submission, rna3d_dir / "val_labels.csv", out, n_distance_maps=2)
    table = capsys.readouterr().out
    print(table)
    assert "model TM" in table and "helix TM" in table and "ss TM" in table
    assert all(t in table for t in TARGETS) and "mean" in table
    assert [t["target_id"] for t in result["targets"]] == TARGETS
    r1108 = result["targets"][2]
    assert r1108["n_refs"] == 2 and r1108["length"] == 69
    for t in result["targets"]:
        # the submission is the helix baseline itself
        assert t["model"]["tm"] == pytest.approx(t["helix"]["tm"], abs=1e-3)  # CSV keeps 3 decimals
        assert 0.05 < t["model"]["tm"] < 0.5 and t["model"]["rmsd"] > 10.0
        assert t["best_baseline"]["tm"] >= t["model"]["tm"] - 1e-3
    assert len(result["missing"]) == 15
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["mean"]["model"]["tm"] == pytest.approx(result["mean"]["model"]["tm"])
    report = (out / "report.md").read_text()
    assert "(tm_per_target.png)" in report and "(distance_map_6E8U_B.png)" in report
    assert (out / "tm_per_target.png").stat().st_size > 1000
    assert (out / "distance_map_7EOJ_A.png").is_file() and not (out / "distance_map_R1108.png").exists()


def test_template_baseline_from_the_train_split(tmp_path: Path, rna3d_dir: Path, helix_submission: Path) -> None:
    result = evaluate(
        helix_submission, rna3d_dir / "val_labels.csv", tmp_path, templates_dir=rna3d_dir, n_distance_maps=0
    )
    assert result["methods"] == ["model", "helix", "ss", "template"]
    assert all(np.isfinite(t["template"]["tm"]) for t in result["targets"])


def test_unknown_target_is_an_input_error(tmp_path: Path, rna3d_dir: Path) -> None:
    path = tmp_path / "submission.csv"
    write_submission(path, [("NOT_A_TARGET", "ACGUACGU", np.stack([aform_helix(8)] * 5))])
    with pytest.raises(InputError, match="NOT_A_TARGET is not in"):
        evaluate(path, rna3d_dir / "val_labels.csv", tmp_path / "out")


def _cli(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rna_hpc.evaluate", *overrides]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli(tmp_path: Path, rna3d_dir: Path, helix_submission: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _cli(
        f"predictions={helix_submission}",
        f"labels={rna3d_dir / 'val_labels.csv'}",
        f"hydra.run.dir={run_dir}",
        f"paths.shared_dir={tmp_path / 'shared'}",
        "experiment_name=exp1",
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "R1108" in proc.stdout and "mean" in proc.stdout
    assert json.loads((run_dir / "evaluation.json").read_text())["n_targets"] == 3
    (line,) = (tmp_path / "shared" / "exp1" / "runs.jsonl").read_text().splitlines()  # the experiment's log
    assert json.loads(line)["kind"] == "evaluate"


def test_cli_errors_are_one_line(tmp_path: Path, rna3d_dir: Path) -> None:
    proc = _cli(
        f"predictions={tmp_path / 'absent.csv'}",
        f"labels={rna3d_dir / 'val_labels.csv'}",
        f"hydra.run.dir={tmp_path}",
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert f"predictions: no such file: {tmp_path / 'absent.csv'}" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(f"hydra.run.dir={tmp_path}", cwd=REPO)
    assert proc.returncode == 2 and "predictions: missing value (set it on the command line" in proc.stderr
