"""MLflow stores without a server: the file-store opt-in and race-free experiment creation (no Lightning import).

MLflow 3 refuses its file store (``file:<dir>``) unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a file store on
shared storage needs no server, so local-path URIs opt in. Jobs of one sweep start together and race to create
the experiment: the loser finds the winner's experiment instead of failing.
"""

from __future__ import annotations

import os
from typing import Any

FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"


def allow_file_store(tracking_uri: str | None) -> None:
    """Opt in to MLflow's file store when the tracking URI is a local path (never for a server)."""
    if tracking_uri and (tracking_uri.startswith("file:") or "://" not in tracking_uri):
        os.environ.setdefault(FILE_STORE_OPT_IN, "true")


def ensure_experiment(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created when missing; a concurrent creation by another job is tolerated."""
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    try:
        return client.create_experiment(name=name, artifact_location=artifact_location)
    except Exception:  # another job created it between the lookup and the creation
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
