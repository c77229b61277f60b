"""The DVC pipeline from a clean clone: every stage runs once, a re-run is a no-op, one changed training parameter
re-runs exactly train, predict and evaluate, metrics show the TM-scores, push/pull round-trips the checkpoint, a
forced re-train is bit-identical, and a broken stage fails the run.

The repository's files (``git ls-files``) are copied into a fresh git repository with no outputs and no DVC cache;
``dvc`` and the stage commands run there with the project's venv first on PATH (env=ci budgets, synthetic data).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rna_hpc.checkpoint.io import sha256_file
from rna_hpc.checkpoint.manifest import read_manifest, verify_manifest
from rna_hpc.checkpoint.runlog import read_records

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STAGES = ("prepare", "train", "predict", "evaluate")
TRAIN_OUT = Path("outputs/pipeline/shared/pipeline/train")
RUNS = Path("outputs/pipeline/shared/pipeline/runs.jsonl")


def _env(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RNA_HPC_DATA", "CUBLAS_WORKSPACE_CONFIG")}
    bin_dir = str(Path(sys.executable).parent)
    return {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}", "PYTHONPATH": str(clone), "DVC_NO_ANALYTICS": "1"}


def dvc(clone: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "dvc")
    return subprocess.run(
        [exe, *args], cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=timeout, check=False
    )


def _ran(proc: subprocess.CompletedProcess) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in proc.stdout]


def _git(clone: Path, *args: str) -> None:
    ident = ["-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", *ident, *args], cwd=clone, check=True, capture_output=True, timeout=120)


def _compose(clone: Path, overrides: list[str], print_stage: str = "") -> subprocess.CompletedProcess:
    """Compose params.yaml from conf/ with ``overrides`` exactly as `dvc exp run -S` does; print a stage's command."""
    code = (
        "import os, sys; from dvc.utils.hydra import compose_and_dump\n"
        "compose_and_dump('params.yaml', os.path.abspath('conf'), None, 'pipeline', os.path.abspath('.'), sys.argv[2:])"
        "\nif sys.argv[1]:\n    from dvc.repo import Repo\n    print(Repo('.').stage.collect(sys.argv[1])[0].cmd)\n"
    )
    argv = [sys.executable, "-c", code, print_stage, *overrides]
    return subprocess.run(argv, cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone: the tracked and unignored files of the checkout, committed in a new git repository."""
    root = tmp_path_factory.mktemp("dvc") / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "clean clone")
    return root


@pytest.fixture(scope="module")
def first_run(clone: Path) -> subprocess.CompletedProcess:
    return dvc(clone, "repro")


def test_params_file_is_the_composition_of_conf(clone: Path) -> None:
    """params.yaml is generated from conf/pipeline.yaml (as `dvc exp run` writes it), never edited by hand."""
    code = (
        "import os, sys; from dvc.utils.hydra import compose_and_dump\n"
        "compose_and_dump(sys.argv[1], os.path.abspath('conf'), None, 'pipeline', os.path.abspath('.'), [])\n"
    )
    out = clone / "composed.yaml"
    env = _env(clone)
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=clone, env=env, check=True, timeout=120)
    composed, committed = yaml.safe_load(out.read_text()), yaml.safe_load((clone / "params.yaml").read_text())
    assert composed == committed, "params.yaml is stale: run `make params` and commit it"
    out.unlink()


def test_the_committed_lock_is_the_current_code(clone: Path) -> None:
    """dvc.lock was refreshed after the last change of code, config or parameters (`make repro`, then commit it):
    in the clean clone only the outputs are missing. Runs before the first repro rewrites the lock."""
    status = dvc(clone, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    stale = []
    for stage, changes in json.loads(status.stdout).items():
        for change in changes:
            if not isinstance(change, dict):
                stale.append(f"{stage}: {change}")
                continue
            for kind, paths in change.items():
                for path, state in paths.items() if isinstance(paths, dict) else [(str(paths), "")]:
                    missing = state in ("deleted", "not in cache")
                    missing_output = missing and (kind == "changed outs" or path.startswith("outputs/"))
                    if not missing_output:
                        stale.append(f"{stage}: {kind} {path} {state}".strip())
    assert stale == [], "dvc.lock is stale; run `make repro` and commit dvc.lock: " + "; ".join(stale)


def test_first_repro_runs_every_stage_then_nothing(clone: Path, first_run: subprocess.CompletedProcess) -> None:
    assert first_run.returncode == 0, first_run.stdout[-3000:] + first_run.stderr[-3000:]
    assert _ran(first_run) == list(STAGES)
    again = dvc(clone, "repro")
    assert again.returncode == 0, again.stderr[-2000:]
    assert _ran(again) == []
    assert "Data and pipelines are up to date" in again.stdout
    kinds = [r["kind"] for r in read_records(clone / RUNS)]
    assert kinds == ["train", "predict", "evaluate"]


def test_metrics_show_prints_the_tm_scores(clone: Path, first_run: subprocess.CompletedProcess) -> None:
    assert first_run.returncode == 0
    result = json.loads((clone / "outputs/pipeline/evaluate/evaluation.json").read_text())
    shown = dvc(clone, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)
    (entry,) = metrics.values()
    data = entry["data"]["outputs/pipeline/evaluate/evaluation.json"]["data"]
    assert data["mean"]["model"]["tm"] == pytest.approx(result["mean"]["model"]["tm"])
    assert 0.0 < data["mean"]["model"]["tm"] <= 1.0
    table = dvc(clone, "metrics", "show")
    assert "mean.model.tm" in table.stdout and "mean.helix.tm" in table.stdout


def test_push_pull_round_trips_the_checkpoint(clone: Path, first_run: subprocess.CompletedProcess, tmp_path) -> None:
    assert first_run.returncode == 0
    remote = tmp_path / "remote"
    assert dvc(clone, "remote", "modify", "--local", "shared", "url", str(remote)).returncode == 0
    pushed = dvc(clone, "push")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    shutil.rmtree(clone / TRAIN_OUT)
    shutil.rmtree(clone / ".dvc" / "cache")
    pulled = dvc(clone, "pull")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    result = clone / TRAIN_OUT / "0"
    assert verify_manifest(result) == []
    manifest = read_manifest(result)
    digest = sha256_file(result / "ckpt" / "best.ckpt")
    assert digest == manifest["artifacts"]["ckpt/best.ckpt"]["sha256"]
    (train,) = [r for r in read_records(clone / RUNS) if r["kind"] == "train"]
    assert train["outputs"]["ckpt/best.ckpt"] == digest
    assert _ran(dvc(clone, "repro")) == []


def test_forced_retrain_is_bit_identical(clone: Path, first_run: subprocess.CompletedProcess) -> None:
    assert first_run.returncode == 0
    forced = dvc(clone, "repro", "--force", "--single-item", "train")
    assert forced.returncode == 0, forced.stdout[-3000:]
    first, second = [r for r in read_records(clone / RUNS) if r["kind"] == "train"][:2]
    assert first["parameters_sha256"] == second["parameters_sha256"]
    ckpts = {k: v for k, v in first["outputs"].items() if k.endswith(".ckpt")}
    assert ckpts and ckpts == {k: second["outputs"][k] for k in ckpts}  # the checkpoint files, byte for byte
    assert first["config_hash"] == second["config_hash"] and first["data_hash"] == second["data_hash"]


def test_a_changed_training_parameter_reruns_train_predict_evaluate(clone: Path, first_run) -> None:
    assert first_run.returncode == 0
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "--allow-empty", "-m", "dvc.lock after the first runs")
    changed = dvc(clone, "exp", "run", "-S", "lr=3e-4")
    assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
    assert _ran(changed) == ["train", "predict", "evaluate"]
    assert yaml.safe_load((clone / "params.yaml").read_text())["lr"] == pytest.approx(3e-4)
    lrs = [r for r in read_records(clone / RUNS) if r["kind"] == "train"]
    assert lrs[-1]["parameters_sha256"] != lrs[0]["parameters_sha256"]


def test_a_broken_stage_fails_the_run(clone: Path, first_run) -> None:
    assert first_run.returncode == 0
    _compose(clone, ["data.synthetic.n_targets=1"])  # as `dvc exp run -S` writes it; prepare rejects it
    broken = dvc(clone, "repro")
    assert broken.returncode != 0
    assert "failed to reproduce 'prepare'" in broken.stdout + broken.stderr
    assert "data.synthetic.n_targets: 1 is too few" in broken.stdout + broken.stderr  # the stage's own error line
    subprocess.run(["git", "checkout", "params.yaml"], cwd=clone, check=True, timeout=60)


def test_train_stage_as_a_slurm_multirun_dry_run(clone: Path) -> None:
    """The documented Slurm form: `-m` and the launcher group through the pipeline keys; the stage's own command."""
    overrides = ['pipeline.train_flags="-m"', 'pipeline.train_overrides="+launcher=slurm hydra.launcher.dry_run=true"']
    rendered = _compose(clone, overrides, print_stage="train")
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    cmd = rendered.stdout.strip().splitlines()[-1]
    assert " -m " in cmd and "+launcher=slurm" in cmd
    proc = subprocess.run(cmd, shell=True, cwd=clone, env=_env(clone), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "#SBATCH --ntasks-per-node=1" in proc.stdout and "dry run: nothing submitted" in proc.stdout
    subprocess.run(["git", "checkout", "params.yaml"], cwd=clone, check=True, timeout=60)
