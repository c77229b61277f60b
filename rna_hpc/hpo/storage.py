"""Optuna storage from one string: a journal file (the embedded default) or a database URL.

``make_storage("runs/hpo/study.journal")`` -> ``JournalStorage(JournalFileBackend)``: an append-only log with a
file lock that works on shared (NFS) file systems, no server needed. ``sqlite:///...`` and any other database URL
(``postgresql://...``, ``mysql+pymysql://...``) -> ``RDBStorage``. Every job of a search receives the same string
(``trial.storage=...``), so it is made absolute first: jobs may start in another working directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rna_hpc.hpo.errors import SweepConfigError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SQLITE = "sqlite:///"


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
            return optuna.storages.RDBStorage(spec)
        except Exception as e:  # SQLAlchemy raises many types (missing driver, bad URL, no server)
            raise SweepConfigError(f"hydra.sweeper.storage: cannot open database '{spec}': {e}") from e
    path = Path(spec)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
    except OSError as e:
        raise SweepConfigError(f"hydra.sweeper.storage: cannot create journal file '{path}': {e.strerror}") from e
    return optuna.storages.JournalStorage(backend)
