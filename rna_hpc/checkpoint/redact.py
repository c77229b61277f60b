"""Hide secrets before anything is written or logged: values of keys or variables named like a credential.

A name matches when it contains KEY, TOKEN, SECRET or PASSWORD (any case). :func:`redact` masks such values in
nested mappings and lists, and ``NAME=value`` assignments inside strings (Hydra overrides, command lines, env
listings); :class:`RedactingFilter` does the same to log records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SENSITIVE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_ASSIGNMENT = re.compile(
    r"(?P<name>[\w.\-]*(?:KEY|TOKEN|SECRET|PASSWORD)[\w.\-]*)(?P<sep>\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;]+)",
    re.IGNORECASE,
)


def is_sensitive(name: str) -> bool:
    """True for a key or variable name that looks like a credential."""
    return bool(SENSITIVE.search(name))


def redact_text(text: str) -> str:
    """Mask the value of every ``NAME=value`` in ``text`` whose NAME looks like a credential."""
    return _ASSIGNMENT.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with credential-like values replaced by ``"***"`` (OmegaConf configs become containers)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(obj):
        obj = OmegaConf.to_container(obj, resolve=False)
    if isinstance(obj, Mapping):
        return {k: MASK if is_sensitive(str(k)) and v is not None else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that masks ``NAME=value`` credentials in every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
