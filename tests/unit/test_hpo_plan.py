"""Search-space parsing, override formatting, stage plans and fingerprints, storage specs, budget estimates."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rna_hpc.errors import ConfigError
from rna_hpc.hpo import budget
from rna_hpc.hpo.report import best_params_yaml
from rna_hpc.hpo.space import (
    format_value,
    grid_choices,
    merge_overrides,
    parse_search_space,
    space_from_json,
    space_to_json,
)
from rna_hpc.hpo.stages import build_refit, build_stages, fingerprint, plan_changes, plan_description
from rna_hpc.hpo.storage import make_storage, resolve_storage_spec


def test_override_grammar_maps_to_optuna_distributions() -> None:
    space, fixed = parse_search_space(
        [
            "lr=tag(log, interval(1e-4, 3e-3))",
            "x=interval(-1, 1)",
            "i=int(interval(1, 5))",
            "il=tag(log, int(interval(1, 64)))",
            "n=tag(int, interval(2, 64))",
            "r=tag(log, int, interval(2, 64))",
            "k=range(1, 9, 2)",
            "k10=range(1, 10, 2)",
            "w=range(0.0, 1.0, 0.25)",
            "h=range(-5.5, 5.5, step=0.5)",
            "model=choice(tiny, base)",
            "trainer.max_epochs=3",
        ]
    )
    assert space["lr"] == FloatDistribution(1e-4, 3e-3, log=True)
    assert space["x"] == FloatDistribution(-1.0, 1.0)
    # as hydra-optuna-sweeper: int(interval(...)) is an int parameter, a range includes its end
    assert space["i"] == IntDistribution(1, 5)
    assert space["il"] == IntDistribution(1, 64, log=True)
    assert space["n"] == IntDistribution(2, 64)
    assert space["r"] == IntDistribution(2, 64, log=True)
    assert space["k"] == IntDistribution(1, 9, step=2)
    assert space["k10"] == IntDistribution(1, 9, step=2)  # the last value on the step grid
    assert space["w"] == FloatDistribution(0.0, 1.0, step=0.25)
    assert space["h"] == FloatDistribution(-5.5, 5.5, step=0.5)
    assert space["model"] == CategoricalDistribution(["tiny", "base"])
    assert fixed == {"trainer.max_epochs": "trainer.max_epochs=3"}


def test_a_later_override_of_a_key_wins() -> None:
    space, fixed = parse_search_space(["x=interval(0, 1)", "y=choice(1, 2)", "x=0.5", "y=choice(3, 4)"])
    assert set(space) == {"y"} and space["y"].choices == (3, 4)
    assert fixed == {"x": "x=0.5"}


@pytest.mark.parametrize(
    "bad, message",
    [
        ("x=interval(1, 0)", "low < high"),
        ("x=tag(log, interval(0, 1))", "low > 0"),
        ("x=range(5, 1)", "empty range"),
    ],
)
def test_bad_sweeps_name_the_parameter(bad: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_search_space([bad])
    assert "hydra.sweeper.params.x" in str(err.value)


def test_unparsable_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="hydra.sweeper.params"):
        parse_search_space(["x=interval(0,"])


def test_values_format_back_into_overrides() -> None:
    assert format_value(None) == "null"
    assert format_value(True) == "true"
    assert format_value(0.1) == "0.1"
    assert format_value(1e-5) == "1e-05"
    assert format_value("tiny") == "tiny"
    assert format_value("runs/a b/j.log") == "'runs/a b/j.log'"
    assert format_value("it's") == "'it\\'s'"
    space, _ = parse_search_space([f"p={format_value('runs/a b,c/j.log')}"])
    assert not space  # a quoted path parses as one fixed value, not a sweep


def test_merge_overrides_later_key_replaces_in_place() -> None:
    merged = merge_overrides(["a=1", "b=2"], ["+b=3", "c=4"], ["a=5"])
    assert merged == ["+b=3", "c=4", "a=5"]


def test_space_json_roundtrip_and_grid() -> None:
    space, _ = parse_search_space(["k=range(1, 10, 2)", "m=choice(a, b)", "x=tag(log, interval(1e-3, 1e-1))"])
    assert space_from_json(space_to_json(space)) == space
    with pytest.raises(ConfigError, match="hydra.sweeper.params.x: GridSampler"):
        grid_choices(space)
    del space["x"]
    assert grid_choices(space) == {"k": [1, 3, 5, 7, 9], "m": ["a", "b"]}


def test_stages_take_defaults_and_report_every_problem() -> None:
    stages = build_stages(
        [{"name": "a", "overrides": ["trainer.max_epochs=3"]}, {"name": "b", "n_trials": 5, "top_k": 2}],
        {"n_trials": 8, "sampler": {"_target_": "optuna.samplers.RandomSampler"}},
    )
    assert [(s.index, s.name, s.n_trials, s.top_k) for s in stages] == [(0, "a", 8, 3), (1, "b", 5, 2)]
    assert stages[1].sampler == {"_target_": "optuna.samplers.RandomSampler"}
    assert build_stages(None, {"n_trials": 4})[0].n_trials == 4
    with pytest.raises(ConfigError) as err:
        build_stages(
            [{"name": "a", "n_trials": 0, "margin": -1}, {"name": "a", "overrides": ["oops"]}, {"nme": "c"}], {}
        )
    text = str(err.value)
    for piece in ["stages[0].n_trials", "stages[0].margin", "'oops'", "used twice", "unknown key(s) nme"]:
        assert piece in text
    with pytest.raises(ConfigError, match="refit.n_seeds"):
        build_refit({"n_seeds": -1})


def test_plan_changes_allow_trial_counts_and_appended_stages_only() -> None:
    stages = build_stages([{"name": "a", "n_trials": 4}, {"name": "b", "n_trials": 4}], {})
    plan = plan_description({"x": "interval(0, 1)"}, "maximize", stages, None)
    more = build_stages([{"name": "a", "n_trials": 9}, {"name": "b", "n_trials": 4}, {"name": "c"}], {"n_trials": 2})
    assert plan_changes(plan, plan_description({"x": "interval(0, 1)"}, "maximize", more, None)) == []
    changed = build_stages([{"name": "a", "n_trials": 4, "overrides": ["trainer.max_epochs=9"]}], {})
    new = plan_description({"x": "interval(0, 2)"}, "minimize", changed, None)
    diff = "\n".join(plan_changes(plan, new))
    for piece in ["direction", "params.x", "stages: 2 -> 1", "stages[0].overrides"]:
        assert piece in diff
    assert fingerprint(plan) != fingerprint(new)


def test_storage_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_spec(None, "sweep/optuna.journal") == str(tmp_path / "sweep" / "optuna.journal")
    assert resolve_storage_spec("rel/j.log", "x") == str(tmp_path / "rel" / "j.log")
    assert resolve_storage_spec("sqlite:///rel.db", "x") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert resolve_storage_spec("postgresql://u@h/db", "x") == "postgresql://u@h/db"
    journal = make_storage(str(tmp_path / "deep" / "dir" / "j.log"))
    assert isinstance(journal, optuna.storages.JournalStorage)
    rdb = make_storage(resolve_storage_spec("sqlite:///s.db", "x"))
    assert isinstance(rdb, optuna.storages.RDBStorage)
    for storage in (journal, rdb):
        optuna.create_study(study_name="s", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), 2)
        assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2


def test_storage_errors_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot create journal file"):
        make_storage(str(tmp_path / "file" / "j.log"))
    with pytest.raises(ConfigError, match="cannot open database"):
        make_storage("nosuchdriver://x/y")


def _cfg(launcher: dict, trainer: dict | None = None) -> OmegaConf:
    return OmegaConf.create(
        {"hydra": {"launcher": launcher}, "trainer": trainer or {"max_epochs": 10, "accelerator": "cpu"}}
    )


def test_job_resources_from_the_launcher() -> None:
    default = budget.job_resources(_cfg({}))
    assert (default.cores, default.gpus, default.timeout_min) == (1, 0, None)
    slurm = {"nodes": 2, "tasks_per_node": 4, "cpus_per_task": 8, "gpus_per_node": 4, "timeout_min": 30}
    res = budget.job_resources(_cfg({**slurm, "max_num_timeout": 3, "_target_": "x.RnaHpcSlurmLauncher"}))
    assert (res.cores, res.gpus, res.max_job_minutes) == (64, 8, 120)
    assert res.describe() == (
        "2 node(s) x 4 task(s) x 8 cpu(s) = 64 cores, 8 GPUs (RnaHpcSlurmLauncher, time limit 30 min x 4 run(s))"
    )
    assert budget.job_resources(_cfg({"tasks_per_node": 2, "gpus_per_task": 1})).gpus == 2
    assert budget.job_resources(_cfg({"gres": "gpu:a100:4"})).gpus == 4
    gpu_trainer = {"max_epochs": 1, "accelerator": "gpu", "devices": 2, "num_nodes": 3}
    assert budget.job_resources(_cfg({}, gpu_trainer)).gpus == 6


def test_budget_lines_and_refusal() -> None:
    cfg = _cfg({"gpus_per_node": 2, "timeout_min": 60})
    res = budget.job_resources(cfg)
    s0 = budget.budget_line("s0", 8, ["trainer.max_epochs=3", "data.fraction=0.5"], cfg, 600.0, res)
    s1 = budget.budget_line("s1", 20, [], cfg, 600.0, res)  # max_epochs from the config: 10
    assert (s0.epochs, s0.fraction, s0.gpu_hours) == (3, 0.5, pytest.approx(8 * 3 * 600 * 0.5 / 3600 * 2))
    assert s1.gpu_hours == pytest.approx(20 * 10 * 600 / 3600 * 2)
    assert (s0.limit_core_hours, s1.limit_gpu_hours) == (8.0, 40.0)  # every job to its 60 min time limit
    text = budget.format_budget([s0, s1], res)
    assert "8 trials x 3 epochs x data 0.5: 2.00 core-h, 4.00 GPU-h (at most 8.00 core-h" in text
    assert "note: a trial needs ~100 min, above the 60 min time limit" in text  # s1: 10 epochs x 10 min
    assert (
        "total            35.33 core-hours, 70.67 GPU-hours" in text and "at most 28.00 core-hours, 56.00 GPU" in text
    )
    budget.check_budget([s0, s1], max_gpu_hours=100.0, allow_over_budget=False)
    with pytest.raises(ConfigError, match="allow_over_budget=true"):
        budget.check_budget([s0, s1], max_gpu_hours=50.0, allow_over_budget=False)
    with pytest.raises(ConfigError, match=r"  hpo.max_gpu_hours: the plan needs an estimated 70.7 GPU-hours \(> 50\)"):
        budget.check_budget([s0, s1], 50.0, False, ("hpo.max_gpu_hours", "hpo.allow_over_budget"))
    budget.check_budget([s0, s1], max_gpu_hours=50.0, allow_over_budget=True)
    limited = budget.budget_line("s", 30, [], cfg, None, res)  # no epoch_seconds: the time-limit bound counts
    with pytest.raises(ConfigError, match="at its time limits up to 60.0 GPU-hours"):
        budget.check_budget([limited], max_gpu_hours=1.0, allow_over_budget=False)
    no_limit = _cfg({"gpus_per_node": 2})  # neither epoch_seconds nor a time limit: nothing to check against
    unknown = budget.budget_line("s", 1, [], no_limit, None, budget.job_resources(no_limit))
    with pytest.raises(ConfigError, match="epoch_seconds"):
        budget.check_budget([unknown], max_gpu_hours=1.0, allow_over_budget=False)
    assert [budget.hours(h) for h in (0, 0.00123, 0.5, 3.456, 1234.5)] == ["0", "0.0012", "0.5", "3.46", "1234"]


def test_max_time_caps_the_estimate_and_the_time_limit_bound() -> None:
    cfg = _cfg({"gpus_per_node": 2, "timeout_min": 60}, {"max_epochs": 10, "max_time": "00:00:30:00"})
    res = budget.job_resources(cfg)
    capped = budget.budget_line("s", 4, [], cfg, 600.0, res)  # 10 epochs x 10 min, but 30 min of wall clock
    assert (capped.trial_minutes, capped.gpu_hours) == (30.0, pytest.approx(4 * 0.5 * 2))
    assert capped.limit_gpu_hours == pytest.approx(4 * 0.5 * 2)  # max_time is shorter than the 60 min time limit
    short = budget.budget_line("s", 4, ["trainer.max_time=00:00:10:00"], cfg, 60.0, res)  # 10 epochs x 1 min
    assert short.trial_minutes == pytest.approx(10.0) and short.max_time_minutes == 10.0
    no_seconds = budget.budget_line("s", 4, ["trainer.max_time=00:02:00:00"], cfg, None, res)
    assert no_seconds.trial_minutes == 120.0 and no_seconds.limit_gpu_hours == pytest.approx(4 * 1.0 * 2)
    assert "4 trials x 10 epochs (max_time 30 min) x data 1: 2.00 core-h, 4.00 GPU-h" in budget.format_budget(
        [capped], res
    )
    budget.check_budget([no_seconds], max_gpu_hours=20.0, allow_over_budget=False)  # 16 GPU-h from max_time
    with pytest.raises(ConfigError, match="trainer.max_time: not a wall-clock budget"):
        budget.budget_line("s", 1, ["trainer.max_time=30min"], cfg, None, res)


def test_best_params_yaml_is_a_global_package_config() -> None:
    text = best_params_yaml({"model": "base", "lr": 0.001, "loss.lddt": 0.25}, {"model", "data"}, "best: #3")
    assert text.startswith("# @package _global_\n# best: #3\n")
    body = OmegaConf.create(text)
    assert body.defaults == [{"override /model": "base"}]
    assert body.lr == 0.001 and body.loss.lddt == 0.25
