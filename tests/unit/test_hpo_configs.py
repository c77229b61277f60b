"""Every shipped conf/hpo/*.yaml composes with the training config and yields a valid plan; the plugin is found."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from rna_hpc.config import register_configs
from rna_hpc.hpo import budget
from rna_hpc.hpo.space import parse_search_space
from rna_hpc.hpo.stages import build_refit, build_stages

CONF = Path(__file__).resolve().parents[2] / "conf"
HPO = sorted(p.stem for p in (CONF / "hpo").glob("*.yaml"))


def test_sweeper_plugin_is_discovered() -> None:
    names = [cls.__name__ for cls in Plugins.instance().discover(Sweeper)]
    assert "StagedOptunaSweeper" in names


@pytest.mark.parametrize("name", HPO)
def test_shipped_hpo_config_composes_into_a_plan(name: str) -> None:
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"hpo={name}"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("staged_optuna_sweeper.StagedOptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.objective == "val/tm"
    params = OmegaConf.to_container(sweeper.params)
    space, fixed = parse_search_space([f"{k}={v}" for k, v in params.items()])
    assert set(space) == set(params) and not fixed
    for key in space:  # every searched key exists in the training config (or is a config group)
        assert OmegaConf.select(cfg, key) is not None or key in cfg.hydra.runtime.choices, key
    stages = build_stages(OmegaConf.to_container(sweeper.stages, resolve=True), {"n_trials": sweeper.n_trials})
    assert len(stages) >= 2 and build_refit(OmegaConf.to_container(sweeper.refit)).n_seeds >= 2
    res = budget.job_resources(cfg)
    lines = [budget.budget_line(s.name, s.n_trials, s.overrides, cfg, sweeper.epoch_seconds, res) for s in stages]
    assert all(line.epochs and line.core_hours is not None for line in lines)
    assert [line.epochs for line in lines] == sorted(line.epochs for line in lines)  # budgets grow by stage


def test_staged_search_matches_its_description() -> None:
    cfg = OmegaConf.load(CONF / "hpo" / "staged.yaml")
    stages = cfg.hydra.sweeper.stages
    assert [(s.name, s.n_trials) for s in stages] == [("explore", 8), ("narrow", 20), ("focus", 50)]
    assert "trainer.max_epochs=3" in stages[0].overrides
    assert cfg.hydra.sweeper.params.lr == "tag(log, interval(1e-4, 3e-3))"
    assert cfg.hydra.sweeper.refit.n_seeds == 3
