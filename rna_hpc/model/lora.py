"""LoRA through peft's public API: adapters on the trunk's attention projections, base weights frozen.

One route only: ``peft.inject_adapter_in_model``, which keeps the model's own class and key names
(``trunk.blocks.0.attn.q_proj.base_layer.weight``, ``...q_proj.lora_A.default.weight``). The modules
listed in ``lora.trainable`` stay fully trainable.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn

from rna_hpc.errors import ConfigError
from rna_hpc.model.settings import lora_config

ADAPTED_STAGE = "trunk"  # LoRA targets are looked up inside this stage only


def target_pattern(target_modules: list[str]) -> str:
    """peft regex (full match on module names) selecting the named projections inside the trunk."""
    names = "|".join(re.escape(t) for t in target_modules)
    return rf"{ADAPTED_STAGE}\..*\.({names})"


def apply_lora(net: nn.Module, lora_cfg: Any) -> nn.Module:
    """Inject LoRA adapters into ``net`` in place when ``lora.enabled``; returns the same module.

    Afterwards only adapter weights and the parameters of the stages in ``lora.trainable`` require grad.
    """
    cfg = lora_config(lora_cfg)
    if not cfg.enabled:
        return net
    stages = [name for name, _ in net.named_children()]
    unknown = [t for t in cfg.trainable if t not in stages]
    if unknown:
        raise ConfigError(f"lora.trainable: unknown stage(s) {', '.join(unknown)}; valid: {', '.join(stages)}")
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=target_pattern(list(cfg.target_modules)),
        bias="none",
    )
    try:
        net = inject_adapter_in_model(peft_cfg, net)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"lora.target_modules: {list(cfg.target_modules)} in the {ADAPTED_STAGE}: {first}") from None
    for name, p in net.named_parameters():
        p.requires_grad = ".lora_" in name
    for stage in cfg.trainable:
        for p in getattr(net, stage).parameters():
            p.requires_grad = True
    return net


def trainable_names(module: nn.Module) -> list[str]:
    """Names of the parameters that require grad (the state-dict keys of a trainable-only checkpoint)."""
    return [name for name, p in module.named_parameters() if p.requires_grad]


def trainable_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The module's state dict restricted to trainable parameters."""
    keep = set(trainable_names(module))
    return {k: v for k, v in module.state_dict().items() if k in keep}


def lora_layer_count(module: nn.Module) -> int:
    """How many modules carry a LoRA adapter."""
    return sum(1 for name, _ in module.named_modules() if name.endswith(".lora_A"))
