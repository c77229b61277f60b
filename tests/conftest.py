"""Shared fixtures: the real data folder, and the composed training config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from predicting import checkpoint, inputs  # noqa: F401  (fixtures: a tiny real checkpoint, validation sequences)

# Tests share 2 cores: one intra-op thread per process (subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def _rna3d_dir() -> Path | None:
    env = os.environ.get("RNA_HPC_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data" / "rna3d")
    for c in candidates:
        if (c / "train_sequences.csv").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def rna3d_dir() -> Path:
    """The real structures folder (RNA_HPC_DATA or ../shared/data/rna3d); a hard failure under CI."""
    path = _rna3d_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("real data not found: set RNA_HPC_DATA or provide ../shared/data/rna3d")
        pytest.skip("real data not found (set RNA_HPC_DATA)")
    return path


@pytest.fixture(scope="session")
def structures_dir(rna3d_dir: Path) -> Path:
    return rna3d_dir / "structures"


def _postgres_server_url() -> str:
    """The URL ``db/start.sh`` printed (``RNA_HPC_DB_URL`` overrides it); a hard failure when no server runs."""
    url = os.environ.get("RNA_HPC_DB_URL")
    if not url:
        pg_dir = Path(os.environ.get("RNA_HPC_PG_DIR") or Path(os.environ.get("TMPDIR", "/tmp")) / "rna-hpc-postgres")
        url_file = pg_dir / "url"
        if not url_file.is_file():
            pytest.fail(f"no PostgreSQL server ({url_file} missing): run `make db-up` (db/start.sh) first")
        url = url_file.read_text().strip()
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the local PostgreSQL server for one test (dropped afterwards): its URL."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(_postgres_server_url())
    name = f"test_{uuid.uuid4().hex[:12]}"
    conninfo = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL server at {server.host}:{server.port} not reachable ({err}): run `make db-up`")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # also ends connections left open
