"""The documentation cannot rot: its commands run, its config reference is current, its error list is complete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "scripts" / "check_docs.py"


def _check(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_configuration_reference_is_generated_from_the_current_schema() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reference = (REPO / "docs" / "configuration.md").read_text()
    for key in ("`data.featurizer.workers`", "`trainer.devices`", "`checkpoint.every_minutes`", "`input`"):
        assert key in reference


def test_every_error_message_is_in_troubleshooting() -> None:
    proc = _check("--errors", timeout=120)
    assert proc.returncode == 0, proc.stderr
    count = int(proc.stdout.split()[0])
    assert count > 150  # the extraction finds the package's messages, not nothing


def test_a_broken_command_or_unlabelled_block_fails_the_check(tmp_path: Path) -> None:
    doc = tmp_path / "bad.md"
    doc.write_text(
        "```bash\npython -m rna_hpc.train --cfg job model=no_such_model\n```\n\n"
        "```\npython -m rna_hpc.train --cfg job\n```\n"
    )
    proc = _check(str(doc), timeout=120)
    assert proc.returncode == 1
    assert "bad.md:2: python -m rna_hpc.train --cfg job model=no_such_model" in proc.stderr
    assert "bad.md:5: commands in a ``` block; label it bash" in proc.stderr


@pytest.mark.slow
def test_every_documented_command_runs() -> None:
    proc = _check("--only", "local")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert int(proc.stdout.strip().splitlines()[-1].split()[0]) >= 30  # commands checked


@pytest.mark.slurm
def test_documented_commands_naming_a_partition_run_against_the_cluster() -> None:
    proc = _check("--only", "slurm", timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert int(proc.stdout.strip().splitlines()[-1].split()[0]) >= 2
