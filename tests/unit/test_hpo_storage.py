"""Database URLs and the storage record: one-line errors with the password masked, and finding a search's storage."""

from __future__ import annotations

import socket
from pathlib import Path

import optuna
import pytest

from rna_hpc.errors import ConfigError, InputError
from rna_hpc.hpo.storage import display_url, make_storage, read_storage_record, write_storage_record
from rna_hpc.status.dashboard import search_storage, serve


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_display_url_masks_the_password() -> None:
    assert display_url("postgresql+psycopg://u:s3cret@db:5432/x") == "postgresql+psycopg://u:***@db:5432/x"
    assert display_url("postgresql+psycopg://u@db/x") == "postgresql+psycopg://u@db/x"
    assert display_url("/shared/optuna.journal") == "/shared/optuna.journal"


def test_no_server_is_one_line_naming_the_url_without_its_password() -> None:
    port = _closed_port()
    with pytest.raises(ConfigError) as err:
        make_storage(f"postgresql+psycopg://u:s3cret@127.0.0.1:{port}/x")
    (problem,) = err.value.problems
    assert problem.startswith(
        f"hydra.sweeper.storage: cannot open database 'postgresql+psycopg://u:***@127.0.0.1:{port}/x'"
    )
    assert "Connection refused" in problem and "make db-up" in problem
    assert "\n" not in problem and "s3cret" not in str(err.value) and "sqlalche.me" not in problem


def test_a_missing_driver_points_to_psycopg() -> None:
    with pytest.raises(ConfigError, match=r"a:\*\*\*@localhost.*for PostgreSQL use postgresql\+psycopg://"):
        make_storage("mysql+pymysql://a:b@localhost/x")


def test_the_storage_record_is_how_a_sweep_dir_names_its_storage(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    with pytest.raises(InputError, match="no Optuna search storage found"):
        search_storage(tmp_path)
    with pytest.raises(InputError, match="no such sweep directory"):
        search_storage(sweep)
    sweep.mkdir()
    (sweep / "optuna.journal").write_text("")
    assert search_storage(sweep) == str(sweep / "optuna.journal")  # the sweeper's default, without a record
    write_storage_record(sweep, "postgresql+psycopg://u:p@h/db", "s")
    assert read_storage_record(sweep) == search_storage(sweep) == "postgresql+psycopg://u:p@h/db"


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    spec = str(tmp_path / "optuna.journal")
    optuna.create_study(study_name="s", storage=make_storage(spec))
    write_storage_record(tmp_path, spec, "s")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"--port {port}: cannot listen on 127.0.0.1:{port}: "):
            serve(tmp_path, port=port)
