"""Boundaries beyond the import contracts (pyproject's [tool.importlinter], checked by ``lint-imports``)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "rna_hpc"
ENV_NAME = re.compile(r"(SLURM|SUBMITIT)_[A-Z0-9_]+")
READERS = ("launch", "job")  # the only packages that read the job's environment


def _env_names(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and ENV_NAME.fullmatch(node.value)
    ]


def test_only_launch_and_job_read_slurm_and_submitit_variables() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in READERS
        for line, name in _env_names(path)
    ]
    assert found == [], "read SLURM_*/SUBMITIT_* through rna_hpc.launch.env instead"


def test_the_check_sees_a_variable_read(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('"""SLURM_JOB_ID in a docstring is fine."""\nimport os\nos.environ.get("SLURM_JOB_ID")\n')
    assert _env_names(probe) == [(3, "SLURM_JOB_ID")]


def _private_names_used(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """Attribute accesses and imports of ``names`` (a dependency's private names) in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in names:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and node.module and "._internal" in f".{node.module}":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if a.name in names]
    return found


def test_private_apis_of_dependencies_are_touched_in_compat_only() -> None:
    from rna_hpc import compat

    names = {name.rsplit(".", 1)[-1] for names in compat.PRIVATE_APIS.values() for name in names}
    names = {n for n in names if n.startswith("_")}
    found = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for root in (PACKAGE, REPO / "hydra_plugins")
        for path in sorted(root.rglob("*.py"))
        if path != PACKAGE / "compat.py"
        for line, name in _private_names_used(path, names)
    ]
    assert found == [], "reach a dependency's private API through rna_hpc.compat (with a contract test) instead"


def test_the_private_api_check_sees_a_use(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from hydra._internal.utils import x\nstudy._storage.get_trial(1)\nself._own = 1\n")
    assert _private_names_used(probe, {"_storage"}) == [(1, "hydra._internal.utils"), (2, "_storage")]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout
