"""The value a training run returns to the sweeper: one objective or several (``objective=[val/tm,val/rmsd]``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from rna_hpc.errors import ConfigError
from rna_hpc.job.run import objective_value


def _trainer(best: float | None, last: dict[str, float]) -> SimpleNamespace:
    callback = SimpleNamespace(best_model_score=None if best is None else torch.tensor(best))
    return SimpleNamespace(checkpoint_callback=callback, callback_metrics={k: torch.tensor(v) for k, v in last.items()})


def _cfg(objective: object) -> object:
    return OmegaConf.create({"objective": objective, "checkpoint": {"monitor": "val/tm"}})


def test_one_objective_is_the_best_monitored_score_or_the_last_value() -> None:
    trainer = _trainer(best=0.31, last={"val/tm": 0.25, "val/rmsd": 12.0})
    assert objective_value(trainer, _cfg("val/tm")) == pytest.approx(0.31)
    assert objective_value(trainer, _cfg("val/rmsd")) == pytest.approx(12.0)


def test_several_objectives_all_come_from_the_last_validation() -> None:
    trainer = _trainer(best=0.31, last={"val/tm": 0.25, "val/rmsd": 12.0})  # the best TM was another epoch's
    assert objective_value(trainer, _cfg(["val/tm", "val/rmsd"])) == pytest.approx([0.25, 12.0])


def test_an_objective_never_logged_names_what_was() -> None:
    with pytest.raises(ConfigError, match=r"objective: metric 'val/lddt' was never logged \(logged: \['val/tm'\]\)"):
        objective_value(_trainer(best=None, last={"val/tm": 0.2}), _cfg(["val/tm", "val/lddt"]))
