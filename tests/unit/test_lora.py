"""LoRA through peft: adapters on the trunk's attention projections only, base frozen, listed stages trainable."""

from __future__ import annotations

import pytest
import torch

from rna_hpc.errors import ConfigError
from rna_hpc.model.lora import apply_lora, lora_layer_count, trainable_names, trainable_state_dict
from rna_hpc.model.network import build_network

TINY = {
    "trunk": {"c_s": 32, "c_z": 16, "n_blocks": 2, "n_heads": 4},
    "merger": {"single_in": 36, "c_cond": 32},
    "generator": {"c_a": 32, "n_blocks": 1, "n_heads": 4},
}
LORA = {"enabled": True, "r": 4, "alpha": 8, "trainable": ["merger", "heads", "generator"]}


def tiny_net():
    torch.manual_seed(0)
    return build_network(TINY)


def test_adapters_sit_on_the_trunk_attention_projections_only() -> None:
    net = apply_lora(tiny_net(), LORA)
    adapted = sorted(name for name, _ in net.named_modules() if name.endswith(".lora_A"))
    assert lora_layer_count(net) == 2 * 4 == len(adapted)  # 2 trunk blocks x q/k/v/out
    assert all(name.startswith("trunk.blocks.") for name in adapted)
    assert {name.split(".")[-2] for name in adapted} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert not any(".lora_" in name for name, _ in net.generator.named_parameters())  # same names, not adapted


def test_only_adapters_and_listed_stages_are_trainable() -> None:
    net = apply_lora(tiny_net(), LORA)
    for name, p in net.named_parameters():
        stage = name.split(".")[0]
        expect = ".lora_" in name or stage in LORA["trainable"]
        assert p.requires_grad == expect, name
    keys = set(trainable_state_dict(net))
    assert keys == set(trainable_names(net))
    assert "trunk.blocks.0.attn.q_proj.lora_A.default.weight" in keys
    assert "trunk.blocks.0.attn.q_proj.base_layer.weight" not in keys
    r, c = LORA["r"], TINY["trunk"]["c_s"]
    n_adapter = sum(v.numel() for k, v in trainable_state_dict(net).items() if ".lora_" in k)
    assert n_adapter == 8 * 2 * r * c


def test_fresh_adapters_leave_the_outputs_unchanged() -> None:
    n = 9
    batch = {
        "seq": torch.randint(0, 4, (1, n)),
        "mask": torch.ones(1, n, dtype=torch.bool),
        "pair_feats": torch.rand(1, n, n, 2),
        "residue_index": torch.arange(n).unsqueeze(0),
    }
    net = tiny_net().eval()
    with torch.no_grad():
        before = net(batch)["single"]
        after = apply_lora(net, LORA)(batch)["single"]
    torch.testing.assert_close(after, before)


def test_disabled_lora_is_a_no_op() -> None:
    net = tiny_net()
    assert apply_lora(net, {"enabled": False}) is net
    assert lora_layer_count(net) == 0 and all(p.requires_grad for p in net.parameters())


def test_unknown_targets_and_stages_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"lora.target_modules: \['qq_proj'\]"):
        apply_lora(tiny_net(), LORA | {"target_modules": ["qq_proj"]})
    with pytest.raises(ConfigError, match="lora.trainable: unknown stage.*decoder.*valid: embedding, trunk"):
        apply_lora(tiny_net(), LORA | {"trainable": ["decoder"]})
    with pytest.raises(ConfigError, match="r must be >= 1"):
        apply_lora(tiny_net(), LORA | {"r": 0})
