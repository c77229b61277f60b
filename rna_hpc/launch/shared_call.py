"""One pickle of the launcher per sweep, not one per job: what each job's submitit pickle calls.

submitit pickles the callable with every job of an array; for Hydra's launchers that is the whole launcher (the
sweep's config, Hydra's context and singletons), once per job. ``SharedCall`` writes it once, beside the jobs'
pickles on shared storage, and each job's pickle holds only its path, digest and the job's own arguments. On the
node the launcher is loaded (after the same ownership and permission checks as the job's own pickle, and its sha256)
and called; the requeue on a time limit goes through the launcher's ``checkpoint`` as before.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.io import atomic_write_bytes


class SharedCall:
    """A picklable stand-in for ``launcher(*args, singleton_state)`` whose pickle is written once to ``folder``."""

    def __init__(self, launcher: Any, singleton_state: dict, folder: Path) -> None:
        import cloudpickle

        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"launcher-{uuid.uuid4().hex}.pkl"
        self.sha256 = atomic_write_bytes(self.path, cloudpickle.dumps((launcher, singleton_state)))
        self.params = dict(getattr(launcher, "params", {}))  # read from the job's pickle (time-limit requeues)
        self._loaded: tuple[Any, dict] | None = (launcher, singleton_state)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "params": self.params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._loaded = None

    def loaded(self) -> tuple[Any, dict]:
        """The launcher and Hydra's singleton state, loaded once per process from their checked pickle."""
        if self._loaded is None:
            import pickle

            from rna_hpc.launch.preflight import folder_problems

            problems = folder_problems(self.path, str(self.path.parent))
            data = self.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != self.sha256:
                problems.append(f"{self.path} is not the file the sweep wrote (sha256 differs)")
            if problems:
                raise RuntimeError(f"rna_hpc: refusing to load {self.path}: " + "; ".join(problems))
            self._loaded = pickle.loads(data)
        return self._loaded

    def __call__(self, *args: Any) -> Any:
        launcher, state = self.loaded()
        return launcher(*args, state)

    def checkpoint(self, *args: Any) -> Any:
        launcher, state = self.loaded()
        return launcher.checkpoint(*args, state)
