"""A search whose database cannot be reached stops at once: one line naming the URL (password masked), no job."""

from __future__ import annotations

import socket
from pathlib import Path

from hpo_app.harness import run_app


def test_unreachable_database_fails_before_any_job(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sweep = tmp_path / "sweep"
    url = f"postgresql+psycopg://rna_hpc:s3cret@127.0.0.1:{port}/rna_hpc"
    out = run_app(sweep, "hydra/launcher=submitit_local", f"hydra.sweeper.storage={url}", timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    line = f"  hydra.sweeper.storage: cannot open database 'postgresql+psycopg://rna_hpc:***@127.0.0.1:{port}/rna_hpc'"
    assert [ln for ln in text.splitlines() if ln.startswith(line)], text
    assert "Connection refused" in text and "s3cret" not in text and "Traceback" not in text
    assert not sweep.exists()  # no storage record, no submitit folder, no job dir
