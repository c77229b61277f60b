"""Work to do before submitit requeues a job on its time-limit signal (USR2): hooks registered by the running task.

The launcher's ``checkpoint()`` runs inside the signal handler, which may interrupt any line, an ``import`` included,
so the hooks are registered beforehand (rna_hpc's training registers its rank-0 save and consolidation when its
callbacks are imported) and nothing is imported here at signal time. A failing hook is logged; the job is requeued
all the same and resumes from an older checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
_HOOKS: list[Callable[[], Any]] = []


def before_requeue(hook: Callable[[], Any]) -> Callable[[], Any]:
    """Register ``hook`` (idempotent); usable as a decorator."""
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def run_hooks() -> list[Any]:
    """Run every hook, oldest first; their results (None for a hook that failed)."""
    results = []
    for hook in list(_HOOKS):
        try:
            results.append(hook())
        except Exception as err:
            log.error(f"before the requeue, {getattr(hook, '__name__', hook)} failed: {type(err).__name__}: {err}")
            results.append(None)
    return results
