"""Optuna storage from one string: a journal file (the embedded default) or a database URL.

``make_storage("runs/hpo/study.journal")`` -> ``JournalStorage(JournalFileBackend)``: an append-only log with a
file lock that works on shared (NFS) file systems, no server needed. ``sqlite:///...`` and any other database URL
(``postgresql+psycopg://...`` for the server ``db/start.sh`` runs, ``mysql+pymysql://...``) -> ``RDBStorage``, which
connects at once: an unreachable server fails here, in one line, before any trial is submitted. Every job of a
search receives the same string (``trial.storage=...``), so it is made absolute first: jobs may start in another
working directory. Messages show a URL with its password masked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rna_hpc.hpo.errors import SweepConfigError

RECORD_NAME = "optuna_storage.json"  # in the sweep dir: where the search's studies are (read by rna-hpc-status)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SQLITE = "sqlite:///"
CONNECT_TIMEOUT_S = 10  # a server that does not answer fails the search's start after this, not after minutes


def is_database_url(spec: str) -> bool:
    """True for ``scheme://...`` strings (handled by SQLAlchemy), False for file paths."""
    return bool(_URL.match(spec))


def resolve_storage_spec(spec: str | None, default_path: str | os.PathLike[str]) -> str:
    """The absolute form of ``spec``; ``None`` or ``""`` means the journal file ``default_path``."""
    if spec is None or str(spec).strip() == "":
        return str(Path(default_path).expanduser().resolve())
    spec = str(spec).strip()
    if spec.startswith(_SQLITE):
        rest = spec[len(_SQLITE) :]
        if rest and not rest.startswith("/") and rest != ":memory:":
            return _SQLITE + str(Path(rest).expanduser().resolve())
        return spec
    if is_database_url(spec):
        return spec
    return str(Path(spec).expanduser().resolve())


def make_storage(spec: str) -> Any:
    """An optuna storage for ``spec``: journal file for a path, ``RDBStorage`` for a database URL.

    Raises SweepConfigError naming the spec when the file cannot be created or the URL cannot be opened.
    """
    import optuna

    if not spec or not str(spec).strip():
        raise SweepConfigError("hydra.sweeper.storage: empty storage string")
    spec = str(spec).strip()
    if is_database_url(spec):
        try:
            return optuna.storages.RDBStorage(spec, engine_kwargs=_engine_kwargs(spec))
        except Exception as e:  # SQLAlchemy raises many types (missing driver, bad URL, no server)
            raise SweepConfigError(
                f"hydra.sweeper.storage: cannot open database '{display_url(spec)}': {_one_line(e)}"
            ) from e
    path = Path(spec)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
    except OSError as e:
        raise SweepConfigError(f"hydra.sweeper.storage: cannot create journal file '{path}': {e.strerror}") from e
    return optuna.storages.JournalStorage(backend)


def display_url(spec: str) -> str:
    """``spec`` with the password of a database URL replaced by ``***`` (file paths unchanged)."""
    if not is_database_url(spec):
        return spec
    from sqlalchemy.engine import make_url

    try:
        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # not parseable as a URL: hide everything between '://' and '@'
        return re.sub(r"://[^@/]*@", "://***@", spec)


def _engine_kwargs(spec: str) -> dict[str, Any]:
    """Server databases: check a pooled connection before use (a long search outlives idle connections), and
    give up connecting after ``CONNECT_TIMEOUT_S`` (libpq's ``connect_timeout``) unless the URL sets its own."""
    if spec.startswith("sqlite"):
        return {}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if spec.startswith("postgresql") and "connect_timeout=" not in spec:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def _one_line(err: BaseException) -> str:
    """The driver's own message on one line, without SQLAlchemy's wrapper and link."""
    if isinstance(err, ImportError):
        return f"{err} (missing database driver; for PostgreSQL use postgresql+psycopg://)"
    text = str(getattr(err, "orig", None) or err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("(Background on")]
    text = " ".join(lines).removeprefix("connection failed: ")
    if "Connection refused" in text or "No such file or directory" in text:
        text += " (no server there; make db-up starts the local one)"
    return text


def write_storage_record(sweep_dir: str | os.PathLike[str], spec: str, study_name: str) -> Path:
    """``<sweep dir>/optuna_storage.json``: the search's storage and study name, for ``rna-hpc-status``."""
    from rna_hpc.checkpoint.io import atomic_write_json

    path = Path(sweep_dir) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"storage": spec, "study_name": study_name})
    return path


def read_storage_record(sweep_dir: str | os.PathLike[str]) -> str | None:
    """The storage spec recorded in ``sweep_dir`` (None when there is no readable record)."""
    import json

    try:
        data = json.loads((Path(sweep_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    spec = data.get("storage") if isinstance(data, dict) else None
    return str(spec) if spec else None
