"""``custom_search_space`` hooks: parameters that exist only under some configurations.

A hook is ``fn(cfg, trial)``: ``cfg`` is the sweep's composed config, ``trial`` the optuna trial being set up. What
it suggests joins the trial's overrides. Hook parameters are suggested afresh in every stage (narrowing applies
to the declared ``params``); enqueued trials keep their values.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

LORA_RANKS = [4, 8, 16]


def lora_space(cfg: DictConfig, trial: Any) -> None:
    """Search ``lora.r`` only when the sweep trains LoRA adapters (``lora.enabled``)."""
    if OmegaConf.select(cfg, "lora.enabled", default=False):
        trial.suggest_categorical("lora.r", LORA_RANKS)
