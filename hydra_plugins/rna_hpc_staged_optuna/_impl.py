"""The staged Optuna sweeper: plan, budget check, one study per stage, narrowing, refit, outputs.

See docs/hpo.md. The logic lives in ``rna_hpc.hpo``; this module wires it to Hydra's Sweeper/Launcher API.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from rna_hpc.hpo import budget as budget_mod
from rna_hpc.hpo import report, resume, runner, stage_study
from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.hpo.refit import run_refit
from rna_hpc.hpo.space import format_value, merge_overrides, params_to_overrides, parse_search_space
from rna_hpc.hpo.stages import Refit, Stage, build_refit, build_stages, plan_description, stage_study_name
from rna_hpc.hpo.storage import display_url, make_storage, resolve_storage_spec, write_storage_record

log = logging.getLogger(__name__)


@dataclass
class Search:
    """Everything one sweep needs, derived once from the sweeper config and the command line."""

    name: str
    spec: str
    storage: Any
    space: dict[str, Any]
    fixed: list[str]
    stages: list[Stage]
    refit: Refit
    plan: dict[str, Any]
    direction: str
    sweep_dir: Path
    studies: list[Any] = field(default_factory=list)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


class StagedOptunaSweeperImpl(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.s = settings
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None
        hook = settings.get("custom_search_space")
        self.hook = get_method(hook) if hook else None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        search = self._prepare(list(arguments))
        stage_study.check_plan(search.storage, search.name, search.plan, display_url(search.spec))
        self._check_budget(search)
        self._validate_compositions(search)
        write_storage_record(search.sweep_dir, search.spec, search.name)
        jobs = itertools.count(resume.next_job_num(self._existing_studies(search)))
        slots = runner.TrialSlots(self.launcher, int(self.s.get("n_jobs") or 1))
        log.info(
            "study %s in %s; %d trial slot(s) (%s)",
            search.name,
            display_url(search.spec),
            slots.size,
            "in-process launcher" if slots.inline else type(self.launcher).__name__,
        )
        parent = None
        try:
            for stage in search.stages:
                parent = self._run_stage(search, stage, parent, slots, jobs)
        finally:
            slots.close()
        refit_study = run_refit(self._refit_context(search, parent, jobs))
        return self._write_final(search, refit_study)

    # -- plan -------------------------------------------------------------------------------------------------
    def _prepare(self, arguments: list[str]) -> Search:
        assert self.config is not None
        s = self.s
        direction = str(s.get("direction") or "minimize")
        if direction not in ("minimize", "maximize"):
            raise SweepConfigError(f"hydra.sweeper.direction: 'minimize' or 'maximize', got '{direction}'")
        rate = float(s.get("max_failure_rate") or 0.0)
        if not 0.0 <= rate <= 1.0:
            raise SweepConfigError(f"hydra.sweeper.max_failure_rate: must be in [0, 1], got {rate}")
        params = {str(k): str(v) for k, v in (to_dict(s.get("params")) or {}).items()}
        space, fixed = parse_search_space([f"{k}={v}" for k, v in params.items()] + arguments)
        if not space:
            raise SweepConfigError("hydra.sweeper.params: the search space is empty")
        defaults = {"n_trials": s.get("n_trials"), "sampler": s.get("sampler"), "pruner": s.get("pruner")}
        stages = build_stages(to_dict(s.get("stages")), defaults)
        for stage in stages:
            stage_study.check_pruner(stage.pruner)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        spec = resolve_storage_spec(s.get("storage"), sweep_dir / "optuna.journal")
        swept = {k: v for k, v in params.items() if k in space}
        swept.update({a.split("=", 1)[0]: a.split("=", 1)[1] for a in arguments if a.split("=", 1)[0] in space})
        plan = plan_description(swept, direction, stages, s.get("custom_search_space"))
        name = str(s.get("study_name") or self.config.hydra.job.name)
        return Search(
            name,
            spec,
            make_storage(spec),
            space,
            list(fixed.values()),
            stages,
            build_refit(to_dict(s.get("refit"))),
            plan,
            direction,
            sweep_dir,
        )

    def _existing_studies(self, search: Search) -> list[Any]:
        names = [stage_study_name(search.name, s.index) for s in search.stages] + [f"{search.name}-refit"]
        return [st for st in (stage_study.find_study(search.storage, n) for n in names) if st is not None]

    def _check_budget(self, search: Search) -> None:
        assert self.config is not None
        res = budget_mod.job_resources(self.config)
        seconds = self.s.get("epoch_seconds")
        seconds = None if seconds is None else float(seconds)
        lines = []
        for stage in search.stages:
            study = stage_study.find_study(search.storage, stage_study_name(search.name, stage.index))
            used = resume.budget_used(study.get_trials(deepcopy=False))[0] if study else 0
            overrides = merge_overrides(search.fixed, stage.overrides)
            lines.append(
                budget_mod.budget_line(stage.name, max(stage.n_trials - used, 0), overrides, self.config, seconds, res)
            )
        if search.refit.n_seeds:
            overrides = merge_overrides(search.fixed, search.refit.overrides)
            lines.append(budget_mod.budget_line("refit", search.refit.n_seeds, overrides, self.config, seconds, res))
        log.info(budget_mod.format_budget(lines, res))
        max_gpu, allow = self.s.get("max_gpu_hours"), bool(self.s.get("allow_over_budget"))
        keys = budget_mod.SWEEPER_KEYS
        if OmegaConf.select(self.config, "hpo.max_gpu_hours", default=None) is not None:
            keys = ("hpo.max_gpu_hours", "hpo.allow_over_budget")  # the search config's own names for them
        budget_mod.check_budget(lines, None if max_gpu is None else float(max_gpu), allow, keys)

    def _validate_compositions(self, search: Search) -> None:
        """Compose one trial config per stage (and the refit) before any job starts: typos fail here."""
        sample = params_to_overrides({k: _representative(d) for k, d in search.space.items()})
        batches = {f"stages[{s.index}]": merge_overrides(search.fixed, s.overrides, sample) for s in search.stages}
        if search.refit.n_seeds:
            batches["refit"] = merge_overrides(search.fixed, search.refit.overrides, sample)
        for where, overrides in batches.items():
            try:
                self.validate_batch_is_legal([overrides])
            except HydraException as e:
                raise SweepConfigError(f"hydra.sweeper.{where}: {' '.join(overrides)}: {e}") from e

    # -- stages -----------------------------------------------------------------------------------------------
    def _run_stage(self, search: Search, stage: Stage, parent: Any, slots: runner.TrialSlots, jobs: Any) -> Any:
        name = stage_study_name(search.name, stage.index)
        study = stage_study.open_study(search.storage, name, search.direction)
        if not study.user_attrs.get("initialized"):
            space, top = stage_study.derive_space(stage, parent, search.space, search.maximize)
            parent_name = parent.study_name if parent is not None else None
            stage_study.init_stage_study(study, stage, space, (parent_name, top), search.plan, stage.pruner)
        space = stage_study.stage_space(study)
        log.info(
            "stage %d '%s' (%s): %s",
            stage.index,
            stage.name,
            name,
            ", ".join(f"{k} {v}" for k, v in study.user_attrs["space_text"].items()),
        )
        resume.fail_orphans(study)
        used, failed = resume.budget_used(study.get_trials(deepcopy=False))
        study.sampler = stage_study.make_sampler(stage.sampler, space, len(study.get_trials(deepcopy=False)))
        n_new = max(stage_study.stage_size(stage, space) - used, 0)
        max_failures = math.floor(float(self.s.get("max_failure_rate") or 0.0) * stage.n_trials + 1e-9)

        def new_trial() -> tuple[int, list[str], int]:
            return self._new_trial(search, stage, study, space, next(jobs))

        try:
            runner.run_trials(study, slots, n_new, new_trial, max_failures, failed_before=failed)
        finally:
            self._write_stage(search, stage, study)
        search.studies.append(study)
        return study

    def _new_trial(self, search: Search, stage: Stage, study: Any, space: dict, job_num: int) -> tuple:
        trial = study.ask(fixed_distributions=space)
        if self.hook is not None:
            self.hook(self.config, trial)
        identity = [
            f"++trial.study_name={study.study_name}",
            f"++trial.storage={format_value(search.spec)}",
            f"++trial.number={trial.number}",
            f"++trial.stage={stage.index}",
        ]
        overrides = merge_overrides(search.fixed, stage.overrides, params_to_overrides(trial.params), identity)
        trial.set_user_attr("job_num", job_num)
        trial.set_user_attr("overrides", overrides)
        return trial.number, overrides, job_num

    def _refit_context(self, search: Search, last: Any, jobs: Any) -> Any:
        from rna_hpc.hpo.refit import RefitContext

        return RefitContext(
            search.storage, search.name, search.direction, search.refit, search.fixed, last, self.launcher, jobs
        )

    # -- outputs ----------------------------------------------------------------------------------------------
    def _groups(self) -> set[str]:
        assert self.config is not None
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
        return {str(k) for k in choices if not str(k).startswith("hydra/")}

    def _write_stage(self, search: Search, stage: Stage, study: Any) -> None:
        out = search.sweep_dir / f"stage{stage.index}-{stage.name}"
        rows = report.trial_rows(study, f"s{stage.index}")
        report.write_summary(rows, out / "summary.csv")
        log.info("stage %d '%s' summary (%s):\n%s", stage.index, stage.name, out, report.format_table(rows))
        best = _best(study)
        if best is not None:
            comment = f"best of {study.study_name}: trial #{best.number}, value {best.value:.6g} ({search.direction})"
            report.write_best(out, best.params, self._groups(), comment)
        if self.s.get("plots", True):
            report.write_plots(study, out)

    def _write_final(self, search: Search, refit_study: Any) -> float | None:
        rows = [r for st in search.studies for r in report.trial_rows(st, f"s{st.user_attrs['stage']}")]
        if refit_study is not None:
            rows += report.trial_rows(refit_study, "refit")
        report.write_summary(rows, search.sweep_dir / "summary.csv")
        last = search.studies[-1]
        best = _best(last)
        if best is None:
            return None
        comment = f"best of {last.study_name}: trial #{best.number}, value {best.value:.6g} ({search.direction})"
        if refit_study is not None and refit_study.user_attrs.get("refit_mean") is not None:
            a = refit_study.user_attrs
            comment += f"\nrefit over {a['refit_n']} seeds: {a['refit_mean']:.6g} +- {a['refit_std']:.6g}"
        report.write_best(search.sweep_dir, best.params, self._groups(), comment)
        if self.s.get("plots", True):
            report.write_plots(search.studies, search.sweep_dir)
        log.info("search %s done: %s\nbest params: %s", search.name, comment, search.sweep_dir / "best_params.yaml")
        return best.value


def _best(study: Any) -> Any:
    from rna_hpc.hpo.narrowing import select_top

    top = select_top(study.get_trials(deepcopy=False), 1, study.direction.name == "MAXIMIZE")
    return top[0] if top else None


def _representative(dist: Any) -> Any:
    return dist.choices[0] if hasattr(dist, "choices") else dist.low


def to_dict(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
