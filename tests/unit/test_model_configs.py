"""The shipped model, LoRA and loss config groups compose, instantiate and agree with the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from rna_hpc.errors import ConfigError
from rna_hpc.model.lora import lora_layer_count
from rna_hpc.model.module import RNA3DModule, parameter_counts
from rna_hpc.model.network import RNA3DNet
from rna_hpc.model.settings import model_config_problems

CONF = Path(__file__).resolve().parents[2] / "conf"


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize("name", ["tiny", "base", "large"])
def test_each_model_instantiates_with_consistent_dimensions(name: str) -> None:
    cfg = composed(f"model={name}")
    assert cfg.model.name == name
    net = instantiate(cfg.model)
    assert isinstance(net, RNA3DNet)
    assert model_config_problems(net.config) == []
    assert net.config.merger.single_in == net.config.trunk.c_s + 2 * net.config.heads.n_torsions
    n = 6
    batch = {
        "seq": torch.randint(0, 4, (1, n)),
        "mask": torch.ones(1, n, dtype=torch.bool),
        "pair_feats": torch.zeros(1, n, n, 2),
        "residue_index": torch.arange(n).unsqueeze(0),
    }
    with torch.no_grad():
        assert net(batch)["torsion"].shape == (1, n, 2, 2)


def test_model_sizes_grow_from_tiny_to_large() -> None:
    sizes = [sum(p.numel() for p in instantiate(composed(f"model={m}").model).parameters()) for m in ("tiny", "base")]
    sizes.append(sum(p.numel() for p in instantiate(composed("model=large").model).parameters()))
    assert sizes[0] < 100_000 < sizes[1] < 1_000_000 < sizes[2]


def test_lora_default_with_the_module_from_resolved_containers() -> None:
    cfg = composed("model=tiny", "lora=default", "loss=default")
    parts = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "lora", "loss", "optim")}
    module = RNA3DModule(**parts, objective=cfg.objective)
    counts = parameter_counts(module)
    assert module.lora_enabled and lora_layer_count(module.net) == 4 * cfg.model.trunk.n_blocks
    assert 0 < counts["trainable"] < counts["total"]
    assert module.hparams["loss"] == {
        "diffusion": 1.0,
        "distogram": 0.3,
        "torsion": 0.5,
        "lddt": 0.5,
        "rollout": 0.0,
        "fape": 0.0,
        "rollout_steps": 3,
    }
    assert composed("lora=off").lora.enabled is False


def test_an_inconsistent_override_fails_at_instantiation_with_the_key() -> None:
    cfg = composed("model=tiny", "model.merger.single_in=40")
    with pytest.raises(Exception) as info:
        instantiate(cfg.model)
    error = info.value if isinstance(info.value, ConfigError) else info.value.__cause__
    assert isinstance(error, ConfigError) and "model.merger.single_in: 40 must equal" in str(error)
