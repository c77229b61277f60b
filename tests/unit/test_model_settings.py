"""Model settings are typed once, where the LightningModule is built, and passed down as typed instances."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from batches import make_batch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rna_hpc.config.schema import HeadsConfig, LoraConfig, LossConfig, MergerConfig, ModelConfig
from rna_hpc.errors import ConfigError
from rna_hpc.model import settings
from rna_hpc.model.module import RNA3DModule

CONF = Path(__file__).resolve().parents[2] / "conf"


class _CountingOmegaConf:
    """OmegaConf as `settings` sees it, counting each merge over a schema's defaults (one per typing)."""

    def __init__(self) -> None:
        self.merges: Counter[str] = Counter()

    def merge(self, *configs):
        self.merges[OmegaConf.get_type(configs[0]).__name__] += 1
        return OmegaConf.merge(*configs)

    def __getattr__(self, name: str):
        return getattr(OmegaConf, name)


@pytest.fixture()
def counting(monkeypatch) -> _CountingOmegaConf:
    spy = _CountingOmegaConf()
    monkeypatch.setattr(settings, "OmegaConf", spy)
    return spy


def _containers(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=tiny", *overrides])
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "lora", "loss", "optim")}


def test_the_module_types_each_settings_group_once(counting: _CountingOmegaConf) -> None:
    module = RNA3DModule(**_containers("lora=default"))
    assert counting.merges == {"ModelConfig": 1, "LoraConfig": 1, "LossConfig": 1, "OptimConfig": 1}
    assert module.lora_enabled and isinstance(module.loss_weights, LossConfig)
    assert module.net.config.trunk.c_s == module.model_cfg["trunk"]["c_s"]


def test_a_loss_step_does_not_retype_the_weights(counting: _CountingOmegaConf) -> None:
    module = RNA3DModule(**_containers())
    counting.merges.clear()
    batch = make_batch([12, 9])
    parts = module.net.loss(batch, module.net(batch), module.loss_weights)
    assert float(parts["loss"].detach()) > 0 and counting.merges == {}


def test_a_resolved_instance_passes_as_it_is_and_the_rest_is_typed() -> None:
    lora = LoraConfig(enabled=True)
    assert settings.lora_config(lora) is lora
    unresolved = ModelConfig(heads=HeadsConfig())  # c_s: "${..trunk.c_s}" until typed
    typed = settings.model_config(unresolved)
    assert typed is not unresolved and typed.heads.c_s == typed.trunk.c_s
    assert settings.model_config(typed) is typed
    assert settings.model_config(ModelConfig(_target_="elsewhere.Net"))._target_ == ModelConfig._target_
    with pytest.raises(ConfigError, match="model.merger.single_in: 40 must equal"):
        settings.model_config(ModelConfig(merger=MergerConfig(single_in=40, c_z=32)))


def test_optimizer_defaults_are_the_schemas() -> None:
    from rna_hpc.config.schema import OptimConfig, TrainConfig

    module = RNA3DModule(model=ModelConfig())
    schema = OptimConfig()
    assert module.optim_settings.warmup_steps == schema.warmup_steps == 50
    assert module.optim_settings.min_lr_ratio == schema.min_lr_ratio
    assert module.optim_settings.optimizer["lr"] == TrainConfig.lr  # the schema's lr: ${lr} at the schema's lr
    given = RNA3DModule(model=ModelConfig(), optim={"warmup_steps": 3, "optimizer": {"lr": 0.5}})
    assert given.optim_settings.warmup_steps == 3 and given.optim_settings.min_lr_ratio == schema.min_lr_ratio
    assert given.optim_settings.optimizer["lr"] == 0.5
