"""Search spaces: Hydra sweep overrides -> optuna distributions, and trial parameters -> overrides.

The vocabulary is hydra-optuna-sweeper's:

| override | distribution |
|---|---|
| ``x=interval(0.1, 0.9)`` | ``FloatDistribution(0.1, 0.9)`` |
| ``n=int(interval(2, 64))``, ``n=tag(int, interval(2, 64))`` | ``IntDistribution(2, 64)`` |
| ``lr=tag(log, interval(1e-4, 3e-3))`` | ``FloatDistribution(1e-4, 3e-3, log=True)`` |
| ``n=tag(log, int(interval(2, 64)))``, ``tag(log, int, interval(2, 64))`` | ``IntDistribution(2, 64, log=True)`` |
| ``n=range(1, 9, 2)`` | ``IntDistribution(1, 9, step=2)`` (the end is included, as in hydra-optuna-sweeper) |
| ``w=range(0.0, 1.0, 0.25)`` | ``FloatDistribution(0.0, 1.0, step=0.25)`` |
| ``model=choice(tiny, base)`` | ``CategoricalDistribution(["tiny", "base"])`` (also config-group choices) |

Any other override (``trainer.max_epochs=3``) is fixed: passed unchanged to every trial.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from rna_hpc.hpo.errors import SweepConfigError

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:+@-]+$")


def parse_search_space(overrides: Iterable[str], where: str = "hydra.sweeper.params") -> tuple[dict, dict[str, str]]:
    """Split overrides into ``(distributions by name, fixed overrides by key)``; bad input -> SweepConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = list(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise SweepConfigError(f"{where}: {e}") from e
    space: dict = {}
    fixed: dict[str, str] = {}
    problems: list[str] = []
    for override in parsed:  # a later override of a key replaces an earlier one (the command line wins)
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if not override.is_sweep_override():
            fixed[key] = override.input_line
            continue
        try:
            space[key] = _distribution(override)
        except ValueError as e:
            problems.append(f"{where}.{key}: {e}")
    if problems:
        raise SweepConfigError(problems)
    return space, fixed


def _distribution(override: Any) -> Any:
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    tags = set(getattr(value, "tags", set()) or set())
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        for c in choices:
            if not isinstance(c, (str, int, float, bool, type(None))):
                raise ValueError(f"choice values must be str, int, float, bool or null, got {type(c).__name__}")
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        start, stop, step = value.start, value.stop, value.step
        if step <= 0:
            raise ValueError("range needs a positive step")
        if stop < start:
            raise ValueError(f"empty range {override.get_value_string()}")
        high = start + math.floor((stop - start) / step + 1e-9) * step  # the last value on the step grid
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, int(high), step=step)
        return FloatDistribution(float(start), float(high), step=float(step))
    if override.is_interval_sweep():
        low, high, log = value.start, value.end, "log" in tags
        as_int = "int" in tags or (isinstance(low, int) and isinstance(high, int))
        if not low < high:
            raise ValueError(f"interval needs low < high, got ({low}, {high})")
        if log and low <= 0:
            raise ValueError(f"a log interval needs low > 0, got {low}")
        if as_int:
            return IntDistribution(math.ceil(low), math.floor(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ValueError(f"unsupported sweep '{override.get_value_string()}'")


def format_value(value: Any) -> str:
    """A parameter value written as an override value (quoted when Hydra's grammar needs it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if isinstance(value, int) or _SAFE_VALUE.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override_key(override: str) -> str:
    """The key an override sets, without its ``+``/``++``/``~`` prefix (used to merge override lists)."""
    key = override.split("=", 1)[0].strip()
    return key.lstrip("+~")


def merge_overrides(*groups: Iterable[str]) -> list[str]:
    """Concatenate override lists; a later override of the same key replaces an earlier one, in place."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            key = override_key(override)
            merged.pop(key, None)
            merged[key] = override
    return list(merged.values())


def params_to_overrides(params: Mapping[str, Any]) -> list[str]:
    return [f"{name}={format_value(value)}" for name, value in params.items()]


def grid_choices(space: Mapping[str, Any]) -> dict[str, list]:
    """The value list of every parameter, for ``GridSampler``; a continuous parameter -> SweepConfigError."""
    from optuna.distributions import CategoricalDistribution

    grid: dict[str, list] = {}
    problems = []
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif getattr(dist, "step", None) is not None and not getattr(dist, "log", False):
            n = int(round((dist.high - dist.low) / dist.step))
            grid[name] = [dist.low + i * dist.step for i in range(n + 1)]
        else:
            problems.append(f"hydra.sweeper.params.{name}: GridSampler needs discrete values (choice or range)")
    if problems:
        raise SweepConfigError(problems)
    return grid


def space_to_json(space: Mapping[str, Any]) -> dict[str, str]:
    from optuna.distributions import distribution_to_json

    return {name: distribution_to_json(dist) for name, dist in space.items()}


def space_from_json(data: Mapping[str, str]) -> dict:
    from optuna.distributions import json_to_distribution

    return {name: json_to_distribution(text) for name, text in data.items()}


def describe(dist: Any) -> str:
    """A short human form: ``[0.0001, 0.003] log``, ``{tiny, base}``, ``[2, 8] step 2``."""
    if hasattr(dist, "choices"):
        return "{" + ", ".join(str(c) for c in dist.choices) + "}"
    text = f"[{dist.low:.6g}, {dist.high:.6g}]"
    if getattr(dist, "log", False):
        text += " log"
    if getattr(dist, "step", None) not in (None, 1):
        text += f" step {dist.step:g}"
    return text


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
