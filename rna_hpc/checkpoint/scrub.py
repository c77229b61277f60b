"""Keep credentials out of what reaches shared storage: consolidated text files and manifests.

Two rules, both applied to text: by name, the value of any ``NAME=value`` (``rna_hpc.checkpoint.redact``) or YAML
``name: value`` line whose name contains KEY, TOKEN, SECRET or PASSWORD; by value, every occurrence of the value of an
environment variable of this process named like that (values of at least 8 characters: shorter ones would mask
common text).
Configs are masked by key name where they are built (``build_manifest``); ``scrub_values`` then masks the values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rna_hpc.checkpoint.redact import MASK, is_sensitive, redact_text

TEXT_SUFFIXES = frozenset({".yaml", ".yml", ".json", ".log", ".csv", ".txt", ".out", ".err", ".md"})
MIN_SECRET_LENGTH = 8
_YAML_LINE = re.compile(
    r"^(?P<head>[ \t]*(?:-[ \t]+)?[\"']?[\w.\-]*(?:KEY|TOKEN|SECRET|PASSWORD)[\w.\-]*[\"']?[ \t]*:[ \t]+)"
    r"(?P<value>[^\s#].*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables named like a credential, longest first."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if is_sensitive(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(found, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with credentials masked by name (``NAME=value``, ``name: value``) and by value."""
    text = redact_text(_YAML_LINE.sub(lambda m: f"{m.group('head')}'{MASK}'", text))  # quoted: * starts a YAML alias
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    return text


def scrub_values(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``obj`` (mappings, lists, strings) with every secret value masked inside its strings and keys."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return obj
    if isinstance(obj, Mapping):
        return {scrub_values(k, secrets): scrub_values(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(scrub_values(v, secrets) for v in obj)
    if isinstance(obj, str):
        for value in secrets:
            obj = obj.replace(value, MASK)
    return obj


def is_text_artifact(path: str | Path) -> bool:
    """A file consolidated through :func:`scrub_bytes` (configs, logs, metrics) rather than copied byte for byte."""
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def scrub_bytes(data: bytes, secrets: list[str] | None = None) -> bytes:
    """:func:`scrub_text` over bytes; bytes that are not UTF-8 pass through unchanged."""
    return scrub_text(data.decode("utf-8", "surrogateescape"), secrets).encode("utf-8", "surrogateescape")
