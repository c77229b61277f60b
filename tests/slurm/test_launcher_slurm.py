"""The validating Slurm launcher against the real cluster, with the tiny DDP app (``ddp_app.py``)."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

GOLDEN = Path(__file__).resolve().parent / "sbatch_golden.txt"
CANONICAL = (
    "launcher=slurm",
    "trainer.devices=2",
    "x=1,2",
    "hydra.launcher.partition=debug",
    "hydra.launcher.timeout_min=10",
    'hydra.launcher.setup=["export OMP_NUM_THREADS=1"]',
)
# 2 nodes x 2 GPUs, each task one process of a 4-rank DDP group
GOLDEN_GPU = GOLDEN.with_name("sbatch_golden_gpu.txt")
CANONICAL_GPU = (*CANONICAL[:2], "trainer=gpu", "trainer.num_nodes=2", *CANONICAL[2:])


def _ranks(sweep: Path) -> dict[str, list[dict]]:
    """``{job subdir: [rank records]}`` written by the app."""
    found: dict[str, list[dict]] = {}
    for path in sorted(sweep.glob("*/rank*.json")):
        found.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
    return found


def _normalise(text: str, run_dir: Path) -> str:
    text = text.replace(str(run_dir), "<RUN>").replace(sys.executable, "<PYTHON>")
    return re.sub(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}", "<NOW>", text)


@pytest.mark.parametrize(
    ("overrides", "golden"), [(CANONICAL, GOLDEN), (CANONICAL_GPU, GOLDEN_GPU)], ids=["cpu", "gpu"]
)
def test_dry_run_prints_golden_sbatch_and_submits_nothing(
    tmp_path: Path, run_app: Callable, sacct: Callable, overrides: tuple[str, ...], golden: Path
) -> None:
    out = run_app(tmp_path, *overrides, "hydra.launcher.dry_run=true")
    assert out.returncode == 0, out.stdout
    start, end = out.stdout.index("rna_hpc:"), out.stdout.index("# dry run: nothing submitted")
    got = _normalise(out.stdout[start:end], tmp_path)
    want = golden.read_text()
    assert got == want, "dry run differs from the golden file:\n" + "".join(
        difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden", "dry run")
    )
    assert sacct(tmp_path) == {}
    assert not (tmp_path / "outputs").exists()


def test_bad_sweep_is_rejected_with_every_problem(tmp_path: Path, run_app: Callable, sacct: Callable) -> None:
    (tmp_path / "blocker").write_text("a file where the shared root should be")
    out = run_app(
        tmp_path,
        "launcher=slurm",
        "x=1,2",
        "trainer.devices=2",
        "hydra.launcher.tasks_per_node=1",
        "hydra.launcher.partition=no_such_partition",
        "paths.shared_dir=blocker/shared",
        'hydra.launcher.name="evil;touch pwned"',
        timeout=60,
    )
    assert out.returncode != 0
    expected = [
        "hydra.launcher.tasks_per_node: is 1, must equal trainer.devices=2",
        "paths.shared_dir: cannot write blocker/shared",
        "hydra.launcher.submitit_folder: cannot write blocker/shared/submitit",
        "hydra.launcher.name: 'evil;touch pwned' contains",
        "hydra.launcher.partition: 'no_such_partition' is not a partition of this cluster; known: [",
    ]
    missing = [line for line in expected if line not in out.stdout]
    assert not missing, f"not reported: {missing}\n{out.stdout}"
    assert "invalid configuration (5 problems)" in out.stdout
    assert "Traceback" not in out.stdout
    assert sacct(tmp_path) == {}
    assert not (tmp_path / "pwned").exists()


@pytest.fixture(scope="module")
def ddp_sweep(tmp_path_factory: pytest.TempPathFactory, run_app: Callable) -> tuple[Path, subprocess.CompletedProcess]:
    """One real sweep shared by the tests below: 2 jobs, each a 2-task gloo DDP group, umask 027."""
    cwd = tmp_path_factory.mktemp("ddp_sweep")
    out = run_app(
        cwd, "launcher=slurm", "trainer.devices=2", "x=1,2", "hydra.launcher.timeout_min=5", "hydra.launcher.umask=027"
    )
    return cwd, out


def test_sweep_runs_each_job_as_a_ddp_group(ddp_sweep: tuple, wait_final: Callable) -> None:
    cwd, out = ddp_sweep
    assert out.returncode == 0, out.stdout
    ranks = _ranks(cwd / "sweep")
    assert sorted(ranks) == ["0", "1"], out.stdout
    for job, x in (("0", 1), ("1", 2)):
        records = sorted(ranks[job], key=lambda r: r["rank"])
        assert [r["rank"] for r in records] == [0, 1]
        assert {r["world_size"] for r in records} == {2}
        assert {r["sum"] for r in records} == {3.0 * x}  # (1 + 2) * x: both ranks joined the all_reduce
        assert len({r["checksum"] for r in records}) == 1  # rank 0's weights reached rank 1
        assert len({r["job_id"] for r in records}) == 1
        assert {r["umask"] for r in records} == {"0o27"}
    jobs = wait_final(cwd, 2)
    assert sorted(jobs.values()) == ["COMPLETED", "COMPLETED"], jobs
    assert all(re.fullmatch(r"\d+_[01]", j) for j in jobs), jobs  # one array of two tasks


def test_submitted_launcher_unpickles_in_a_fresh_process(ddp_sweep: tuple) -> None:
    cwd, out = ddp_sweep
    assert out.returncode == 0, out.stdout
    pickles = sorted(cwd.glob("outputs/shared/submitit/ddp_app/*/*/*_submitted.pkl"))
    assert len(pickles) == 2, pickles
    code = (
        "import sys, cloudpickle\n"
        "d = cloudpickle.load(open(sys.argv[1], 'rb'))\n"
        "launcher = d.function.loaded()[0]  # the array's one launcher pickle, checked and loaded\n"
        "print(type(launcher).__module__, type(launcher).__name__, d.args[0], launcher.umask)\n"
        "assert 'torch' not in sys.modules, 'unpickling the launcher imported torch'\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(pickles[0])], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("hydra_plugins.rna_hpc_launcher.launchers RnaHpcSlurmLauncher ['launcher=slurm'")
    assert res.stdout.split()[-1] == "027"


def test_failing_job_surfaces_and_the_other_completes(tmp_path: Path, run_app: Callable, wait_final: Callable) -> None:
    out = run_app(tmp_path, "launcher=slurm", "trainer.devices=1", "fail=false,true", "hydra.launcher.timeout_min=5")
    assert out.returncode != 0
    assert re.search(
        r"  #1 \(Slurm job \d+_1\) fail=True: RuntimeError: job asked to fail \(x=1\)$", out.stdout, re.M
    ), out.stdout
    assert "Error executing job with overrides: ['launcher=slurm', 'trainer.devices=1', 'fail=True']" in out.stdout
    ranks = _ranks(tmp_path / "sweep")
    assert list(ranks) == ["0"] and ranks["0"][0]["world_size"] == 1
    states = wait_final(tmp_path, 2)  # the task raised: Slurm's accounting says FAILED, not COMPLETED
    assert [states[k] for k in sorted(states)] == ["COMPLETED", "FAILED"], states


def test_job_dying_without_result_fails_alone(tmp_path: Path, run_app: Callable, wait_final: Callable) -> None:
    out = run_app(tmp_path, "launcher=slurm", "trainer.devices=1", "crash=false,true", "hydra.launcher.timeout_min=5")
    assert out.returncode != 0
    assert re.search(r"job #1 \(\d+_1\) failed: .*has not produced any output", out.stdout), out.stdout
    assert "UncompletedJobError" in out.stdout
    ranks = _ranks(tmp_path / "sweep")
    assert list(ranks) == ["0"] and ranks["0"][0]["sum"] == 1.0
    assert sorted(wait_final(tmp_path, 2).values()) == ["COMPLETED", "FAILED"]


def test_detached_sweep_returns_job_ids_and_the_jobs_run(
    tmp_path: Path, run_app: Callable, wait_final: Callable
) -> None:
    out = run_app(tmp_path, "launcher=slurm", "trainer.devices=1", "x=5", "hydra.launcher.detach=true", timeout=60)
    assert out.returncode == 0, out.stdout
    (job_id,) = re.findall(r"job #0 submitted as (\S+) \(detached\)", out.stdout)
    assert wait_final(tmp_path, 1) == {job_id: "COMPLETED"}
    assert _ranks(tmp_path / "sweep")["0"][0]["sum"] == 5.0


def test_two_node_job(tmp_path: Path, run_app: Callable) -> None:
    out = run_app(
        tmp_path, "launcher=slurm", "trainer.num_nodes=2", "trainer.devices=1", "hydra.launcher.timeout_min=5"
    )
    assert out.returncode == 0, out.stdout
    records = sorted(_ranks(tmp_path / "sweep")["0"], key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"]) for r in records] == [(0, 2), (1, 2)]
    assert len({r["node"] for r in records}) == 2, records  # one task on each node
    assert {r["sum"] for r in records} == {3.0}
