"""Every shipped conf/hpo/*.yaml composes into a valid plan whose every searched parameter is a real config key or
group, with every value composing into a valid training config; model and data groups are searchable with each of
their options; LoRA parameters exist only in trials that train LoRA adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from rna_hpc.config import register_configs
from rna_hpc.config.validate import collect_problems
from rna_hpc.hpo import budget
from rna_hpc.hpo.conditional import LORA_KEYS, lora_space
from rna_hpc.hpo.space import params_to_overrides, parse_search_space
from rna_hpc.hpo.stages import build_refit, build_stages

CONF = Path(__file__).resolve().parents[2] / "conf"
HPO = sorted(p.stem for p in (CONF / "hpo").glob("*.yaml"))
_ABSENT = object()


def compose_train(overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """The training config as a trial job composes it (``${hydra:...}`` resolves to ``run_dir``)."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    if run_dir is not None:
        with open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture(autouse=True)
def _restore_hydra_config() -> Iterator[None]:
    """compose_train makes each config the current HydraConfig; put back the previous one afterwards."""
    previous = HydraConfig.instance().cfg
    yield
    HydraConfig.instance().cfg = previous


def search_space(cfg: DictConfig) -> dict[str, Any]:
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    space, fixed = parse_search_space([f"{k}={v}" for k, v in params.items()])
    assert set(space) == set(params) and not fixed
    return space


def values_of(dist: Any) -> list[Any]:
    """Every choice of a categorical; both bounds of a numeric range."""
    return list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]


def test_sweeper_plugin_is_discovered() -> None:
    names = [cls.__name__ for cls in Plugins.instance().discover(Sweeper)]
    assert "StagedOptunaSweeper" in names


@pytest.mark.parametrize("name", HPO)
def test_shipped_hpo_config_composes_into_a_plan(name: str) -> None:
    cfg = compose_train([f"hpo={name}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("staged_optuna_sweeper.StagedOptunaSweeper")
    assert sweeper.direction == "maximize" and cfg.objective == "val/tm"
    stages = build_stages(OmegaConf.to_container(sweeper.stages, resolve=True), {"n_trials": sweeper.n_trials})
    assert len(stages) >= 2 and build_refit(OmegaConf.to_container(sweeper.refit)).n_seeds >= 2
    res = budget.job_resources(cfg)
    lines = [budget.budget_line(s.name, s.n_trials, s.overrides, cfg, sweeper.epoch_seconds, res) for s in stages]
    assert all(line.epochs and line.core_hours is not None for line in lines)
    assert [line.epochs for line in lines] == sorted(line.epochs for line in lines)  # budgets grow by stage
    assert sweeper.max_gpu_hours == cfg.hpo.max_gpu_hours and sweeper.allow_over_budget is False


@pytest.mark.parametrize("name", HPO)
def test_every_search_param_is_a_config_key_or_group_and_each_value_validates(name: str, tmp_path: Path) -> None:
    cfg = compose_train([f"hpo={name}"])
    groups = {k for k in cfg.hydra.runtime.choices if not str(k).startswith("hydra")}
    for key, dist in search_space(cfg).items():
        if key in groups:
            options = {p.stem for p in (CONF / key).glob("*.yaml")}
            assert set(dist.choices) <= options, f"{name}: {key}={dist.choices} names no option of conf/{key}/"
        else:
            assert OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT, f"{name}: no config key '{key}'"
        for value in values_of(dist):
            overrides = [f"hpo={name}", *params_to_overrides({key: value})]
            trial_cfg = compose_train(overrides, tmp_path / "run")
            got = trial_cfg.hydra.runtime.choices[key] if key in groups else OmegaConf.select(trial_cfg, key)
            assert got == value, f"{name}: {key}={value!r} composed as {got!r}"
            assert collect_problems(trial_cfg) == [], f"{name}: {key}={value!r}"


@pytest.mark.parametrize("group", ["model", "data"])
def test_every_model_and_data_option_is_searchable(group: str, rna3d_dir: Path, tmp_path: Path) -> None:
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    space, _ = parse_search_space([f"{group}=choice({', '.join(options)})"])
    assert list(space[group].choices) == options
    for option in space[group].choices:  # as a trial gets it: the sampled value turned back into an override
        overrides = ["hpo=staged", f"paths.data_dir={rna3d_dir}", *params_to_overrides({group: option})]
        cfg = compose_train(overrides, tmp_path / "run")
        assert cfg.hydra.runtime.choices[group] == option
        assert collect_problems(cfg) == [], f"{group}={option}"
        if group == "model":
            net = instantiate(cfg.model)
            assert sum(p.numel() for p in net.parameters()) > 0


def _trial(params: dict[str, Any]) -> optuna.Trial:
    """A real trial whose declared params are already sampled (as the sweeper asks them)."""
    study = optuna.create_study(direction="maximize")
    return study.ask({k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()})


@pytest.mark.parametrize(
    ("overrides", "trial_params", "searched"),
    [
        ([], {}, False),
        (["lora=default"], {}, True),
        ([], {"lora.enabled": True}, True),
        (["lora=default"], {"lora.enabled": False}, False),
    ],
)
def test_lora_params_exist_only_when_lora_is_enabled(
    overrides: list[str], trial_params: dict, searched: bool, tmp_path: Path
) -> None:
    cfg = compose_train(["hpo=staged", *overrides])
    assert get_method(cfg.hydra.sweeper.custom_search_space) is lora_space
    trial = _trial(trial_params)
    lora_space(cfg, trial)
    lora_params = {k: v for k, v in trial.params.items() if k in LORA_KEYS}
    assert bool(lora_params) is searched and (not searched or set(lora_params) == set(LORA_KEYS))
    if searched:  # every suggested value is a real, valid setting of the trial's config
        ckpt = tmp_path / "base.ckpt"
        ckpt.write_bytes(b"")
        trial_cfg = compose_train(
            ["hpo=staged", *overrides, f"model.init_from={ckpt}", *params_to_overrides(trial.params)], tmp_path / "run"
        )
        assert trial_cfg.lora.enabled and all(OmegaConf.select(trial_cfg, k) == v for k, v in lora_params.items())
        assert collect_problems(trial_cfg) == []


@pytest.mark.parametrize("name", HPO)
def test_lora_params_are_never_searched_unconditionally(name: str) -> None:
    params = OmegaConf.load(CONF / "hpo" / f"{name}.yaml").hydra.sweeper.params
    assert not [k for k in params if str(k).startswith("lora.")], "lora.* belongs to the lora_space hook"


def test_staged_search_matches_its_description() -> None:
    cfg = OmegaConf.load(CONF / "hpo" / "staged.yaml")
    stages = cfg.hydra.sweeper.stages
    assert [(s.name, s.n_trials) for s in stages] == [("explore", 8), ("narrow", 20), ("focus", 50)]
    assert "trainer.max_epochs=3" in stages[0].overrides
    assert cfg.hydra.sweeper.params.lr == "tag(log, interval(1e-4, 3e-3))"
    assert cfg.hydra.sweeper.params.model == "choice(tiny, base)"
    assert cfg.hydra.sweeper.refit.n_seeds == 3


def test_staged_trials_run_on_scratch_and_consolidate_to_shared(tmp_path: Path) -> None:
    """hpo=staged: the trial run dirs (the sweep dir) on scratch; the journal and the search's files on shared;
    each trial's results go to <shared>/<experiment>/<study>/<job num> like any job's."""
    from rna_hpc.launch.identity import RunIdentity

    paths = [f"paths.scratch_dir={tmp_path}/scratch", f"paths.shared_dir={tmp_path}/shared"]
    cfg = compose_train(["hpo=staged", *paths])
    sweep_dir = Path(cfg.hydra.sweep.dir)
    assert sweep_dir == tmp_path / "scratch" / "hpo" / "default-staged"
    assert Path(cfg.hydra.sweeper.results_dir) == tmp_path / "shared" / "hpo" / "default-staged"
    hydra_cfg = OmegaConf.to_container(cfg.hydra, resolve=False)
    hydra_cfg.update(mode="MULTIRUN", job={**hydra_cfg["job"], "num": 3})
    hydra_cfg["runtime"]["output_dir"] = str(sweep_dir / "3")
    hydra_cfg["sweep"]["dir"] = str(sweep_dir)
    identity = RunIdentity.from_hydra(cfg, OmegaConf.create(hydra_cfg))
    assert identity.run_dir == sweep_dir / "3"
    assert identity.shared_dir == tmp_path / "shared" / "default" / "default-staged" / "3"


def test_a_list_of_objective_names_validates_each_name() -> None:
    """``objective=[val/tm,val/rmsd]``: the task returns one value per name for a multi-objective search."""
    ok = compose_train(["hpo=smoke", "objective=[val/tm,val/rmsd]", "hydra.sweeper.direction=[maximize,minimize]"])
    assert list(ok.objective) == ["val/tm", "val/rmsd"]
    assert not [p for p in collect_problems(ok) if p.startswith("objective")]
    bad = compose_train(["objective=[val/tm,val/tmm]"])
    assert [p for p in collect_problems(bad) if p.startswith("objective")] == [
        "objective: 'val/tmm' is never logged; choose from ['val/tm', 'val/rmsd', 'val/loss', 'train/loss']"
    ]


@pytest.mark.parametrize("group", ["sampler", "pruner"])
def test_every_sampler_and_pruner_takes_every_argument_of_its_optuna_class(group: str) -> None:
    import inspect

    from hydra.core.config_store import ConfigStore

    from hydra_plugins.rna_hpc_staged_optuna.config import PROVIDER

    nodes = ConfigStore.instance().repo["hydra"]["sweeper"][group]
    assert len(nodes) >= 8
    for name, entry in nodes.items():
        assert entry.provider == PROVIDER
        keys = set(entry.node) - {"_target_"}
        cls = get_method(entry.node["_target_"])
        params = inspect.signature(cls.__init__).parameters.values()
        wanted = {p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        assert keys == wanted, f"{group}/{name}: missing {sorted(wanted - keys)}, unknown {sorted(keys - wanted)}"


def test_upstream_sampler_keys_build_the_sampler() -> None:
    from hydra_plugins.rna_hpc_staged_optuna.config import TPESamplerConfig
    from rna_hpc.hpo.stage_study import make_sampler

    space, _ = parse_search_space(["x=interval(-1.0, 1.0)"])
    node = OmegaConf.merge(
        OmegaConf.structured(TPESamplerConfig),
        {"consider_endpoints": True, "prior_weight": 2.0, "warn_independent_sampling": False, "seed": 3},
    )
    sampler = make_sampler(node, space, n_existing=2)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", -1.0, 1.0) ** 2, n_trials=3)
    assert len(study.trials) == 3
