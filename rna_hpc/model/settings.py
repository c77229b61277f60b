"""Typed model settings from whatever the caller holds: schema dataclasses, DictConfigs or plain dicts.

The model is built by ``hydra.utils.instantiate(cfg.model)`` (dataclass parts), from checkpoints (plain dicts)
and from tests (dataclasses with their interpolation defaults). Everything goes through the schema, so a typo
or a wrong type fails with a ConfigError naming the key, and derived dimensions are checked in one place.
The LightningModule types its settings once and passes the typed instances down: a resolved schema instance
is returned as it is, without another round trip through OmegaConf.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rna_hpc.config.schema import LoraConfig, LossConfig, ModelConfig, OptimConfig, TrainConfig
from rna_hpc.config.validate import model_problems
from rna_hpc.errors import ConfigError

T = TypeVar("T")
_HYDRA_KEYS = ("_target_", "_convert_", "_partial_", "_recursive_")


def plain(value: Any) -> Any:
    """A config value as plain Python containers (resolved), for checkpoints and hyperparameters."""
    if isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return OmegaConf.to_container(OmegaConf.structured(value), resolve=True, enum_to_str=True)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def typed(schema: type[T], value: Any, where: str) -> T:
    """``value`` merged over the defaults of ``schema`` and returned as a resolved ``schema`` instance.

    A ``schema`` instance that is resolved already (what this returns) comes back as it is.
    """
    if value is None:
        value = {}
    if isinstance(value, schema) and _resolved(value):
        return value
    if isinstance(value, schema):
        value = OmegaConf.structured(value)
    elif not isinstance(value, Mapping | DictConfig) and not dataclasses.is_dataclass(value):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    try:
        node = OmegaConf.merge(OmegaConf.structured(schema), _without_hydra_keys(value))
        return OmegaConf.to_object(node)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(f"{where}.{key}: {msg}") from None


def _resolved(instance: Any) -> bool:
    """No interpolation or missing value left, every nested part an instance of its schema, Hydra keys as in it."""
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        part = _part_schema(type(instance), f.name)
        if part is not None:
            if not (isinstance(value, part) and _resolved(value)):
                return False
        elif f.name in _HYDRA_KEYS:
            if value != f.default:  # `typed` drops Hydra keys from what it merges: the schema's own stay
                return False
        elif not _resolved_leaf(value):
            return False
    return True


@functools.cache
def _part_schema(schema: type, name: str) -> type | None:
    """The dataclass of field ``name`` of ``schema`` when it is a nested part (from its default), else None."""
    f = next(f for f in dataclasses.fields(schema) if f.name == name)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return type(default) if dataclasses.is_dataclass(default) else None


def _resolved_leaf(value: Any) -> bool:
    if isinstance(value, str):
        return "${" not in value and value != "???"
    if isinstance(value, list | tuple):
        return all(_resolved_leaf(v) for v in value)
    if isinstance(value, Mapping):
        return all(_resolved_leaf(v) for v in value.values())
    return not dataclasses.is_dataclass(value)


def _without_hydra_keys(value: Any) -> Any:
    if isinstance(value, DictConfig | Mapping):
        return {k: v for k, v in value.items() if k not in _HYDRA_KEYS}
    return value


def model_config(value: Any) -> ModelConfig:
    """A resolved ModelConfig whose derived dimensions agree (ConfigError listing every problem otherwise)."""
    cfg = typed(ModelConfig, value, "model")
    problems = model_config_problems(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def network_config(name: str, init_from: str | None, parts: Mapping[str, Any]) -> ModelConfig:
    """The ModelConfig of a network's parts; typed parts (as ``instantiate`` hands them) are assembled as they are."""
    given = {k: v for k, v in parts.items() if v}
    if all(isinstance(v, _part_schema(ModelConfig, k) or ()) for k, v in given.items()):
        return model_config(ModelConfig(name=name, init_from=init_from, **given))
    return model_config({"name": name, "init_from": init_from} | given)


def model_config_problems(cfg: ModelConfig) -> list[str]:
    """Every inconsistency between the model's shape-defining fields, as 'key: why' lines."""
    return model_problems(cfg)


def lora_config(value: Any) -> LoraConfig:
    """A resolved LoraConfig."""
    cfg = typed(LoraConfig, value, "lora")
    if cfg.enabled and (cfg.r < 1 or cfg.alpha <= 0 or not cfg.target_modules):
        raise ConfigError("lora: r must be >= 1, alpha > 0 and target_modules non-empty when lora.enabled")
    return cfg


def optim_config(value: Any) -> OptimConfig:
    """A resolved OptimConfig; without one, the schema's own (its ``lr: ${lr}`` at the schema's ``lr``)."""
    if not value:
        node = OmegaConf.create({"lr": TrainConfig.lr, "optim": OmegaConf.structured(OptimConfig)})
        return OmegaConf.to_object(node.optim)  # type: ignore[return-value]
    return typed(OptimConfig, value, "optim")


def loss_config(value: Any) -> LossConfig:
    """A resolved LossConfig."""
    return typed(LossConfig, value, "loss")
