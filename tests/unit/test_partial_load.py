"""partial_load: every key checked against the module; load_checkpoint_file: weights_only or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rna_hpc.checkpoint.partial_load import LoadResult, load_checkpoint_file, partial_load
from rna_hpc.errors import CheckpointError


class Pipeline(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.head = nn.Linear(8, 2)


def frozen_trunk() -> Pipeline:
    torch.manual_seed(0)
    model = Pipeline()
    for p in model.trunk.parameters():
        p.requires_grad = False
    return model


def test_a_full_state_dict_loads_exactly() -> None:
    source, target = Pipeline(), frozen_trunk()
    result = partial_load(target, source.state_dict())
    assert result == LoadResult(missing=[], unexpected=[])
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_declared_frozen_keys_may_be_absent() -> None:
    model = frozen_trunk()
    trunk_before = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    head_only = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items() if k.startswith("head.")}
    result = partial_load(model, head_only, frozen_prefixes_allowed_missing=["trunk."])
    assert result.missing == sorted(f"trunk.{k}" for k in trunk_before)
    assert torch.all(model.head.weight == 0.5)
    for key, value in model.trunk.state_dict().items():
        assert torch.equal(value, trunk_before[key])


def test_frozen_keys_absent_without_a_declaration_are_refused() -> None:
    model = frozen_trunk()
    head_only = {k: v for k, v in model.state_dict().items() if k.startswith("head.")}
    with pytest.raises(CheckpointError, match=r"'trunk\.0\.bias' is missing .* not declared frozen"):
        partial_load(model, head_only)


def test_a_missing_trainable_key_is_refused_even_under_a_frozen_prefix() -> None:
    model = frozen_trunk()
    state = model.state_dict()
    del state["head.weight"]
    with pytest.raises(CheckpointError, match=r"trainable key 'head\.weight' is missing"):
        partial_load(model, state, frozen_prefixes_allowed_missing=["trunk.", "head."])


def test_a_shape_mismatch_names_the_key_and_both_shapes() -> None:
    model = frozen_trunk()
    state = model.state_dict()
    state["head.weight"] = torch.zeros(3, 8)
    with pytest.raises(CheckpointError, match=r"'head\.weight': checkpoint \(3, 8\), model \(2, 8\)"):
        partial_load(model, state)


def test_an_unexpected_key_is_refused_unless_allowed() -> None:
    model = frozen_trunk()
    state = model.state_dict() | {"extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected key 'extra\.weight'"):
        partial_load(model, state)
    assert partial_load(model, state, allow_unexpected=True).unexpected == ["extra.weight"]


def test_a_refused_load_changes_nothing() -> None:
    model = frozen_trunk()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: torch.ones_like(v) for k, v in before.items()}
    state["head.bias"] = torch.ones(5)
    with pytest.raises(CheckpointError):
        partial_load(model, state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_checkpoint_files_load_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": Pipeline().state_dict(), "rna_hpc": {"model": {"name": "tiny"}}}, path)
    assert set(load_checkpoint_file(path)) == {"state_dict", "rna_hpc"}


class Payload:
    """Any class instance makes a pickle that needs arbitrary code to load."""


def test_an_unsafe_pickle_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"needs arbitrary code to load \(\S*Payload\); refusing") as info:
        load_checkpoint_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_truncated_files_are_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint_file(tmp_path / "absent.ckpt")
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": Pipeline().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.ckpt: unreadable checkpoint"):
        load_checkpoint_file(path)
