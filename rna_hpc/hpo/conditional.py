"""``custom_search_space`` hooks: parameters that exist only under some configurations.

A hook is ``fn(cfg, trial)``: ``cfg`` is the sweep's composed config, ``trial`` the optuna trial being set up (its
declared ``params`` are already sampled). What it suggests joins the trial's overrides. Hook parameters are
suggested afresh in every stage (narrowing applies to the declared ``params``); enqueued trials keep their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

LORA_RANKS = [4, 8, 16]
LORA_ALPHAS = [8, 16, 32]  # the update is scaled by alpha / r
LORA_DROPOUT = (0.0, 0.2)
LORA_KEYS = ("lora.r", "lora.alpha", "lora.dropout")


def lora_enabled(cfg: DictConfig, params: Mapping[str, Any]) -> bool:
    """Whether this trial trains LoRA adapters: a searched ``lora.enabled`` wins over the sweep's config."""
    if "lora.enabled" in params:
        return bool(params["lora.enabled"])
    return bool(OmegaConf.select(cfg, "lora.enabled", default=False))


def lora_space(cfg: DictConfig, trial: Any) -> None:
    """Search the adapter's rank, scale and dropout only in trials that train LoRA adapters (``lora.enabled``)."""
    if not lora_enabled(cfg, trial.params):
        return
    trial.suggest_categorical("lora.r", LORA_RANKS)
    trial.suggest_categorical("lora.alpha", LORA_ALPHAS)
    trial.suggest_float("lora.dropout", *LORA_DROPOUT)
