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
from rna_hpc.hpo import report, resume, runner, stage_study, tracking
from rna_hpc.hpo.errors import SweepConfigError
from rna_hpc.hpo.narrowing import pareto_front, select_top
from rna_hpc.hpo.refit import run_refit
from rna_hpc.hpo.space import format_value, merge_overrides, override_key, params_to_overrides, parse_search_space
from rna_hpc.hpo.stages import Refit, Stage, build_refit, build_stages, plan_description, stage_study_name
from rna_hpc.hpo.storage import display_url, make_storage, resolve_storage_spec, write_storage_record
from rna_hpc.hpo.trial_job import RecordsTrialResult

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
    directions: list[str]
    results_dir: Path  # journal (default storage), summaries, best params, optimization_results.yaml
    studies: list[Any] = field(default_factory=list)
    tracker: Any = None  # a rna_hpc.hpo.tracking.TrialTracker when hydra.sweeper.mlflow.enabled

    @property
    def direction_text(self) -> str:
        return ", ".join(self.directions)


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
            config=config, hydra_context=hydra_context, task_function=RecordsTrialResult(task_function)
        )

    def sweep(self, arguments: list[str]) -> Any:
        search = self._prepare(list(arguments))
        stage_study.check_plan(search.storage, search.name, search.plan, display_url(search.spec))
        only = self._only_stage(search)
        self._check_budget(search, only)
        self._validate_compositions(search)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        for where in dict.fromkeys([sweep_dir, search.results_dir]):  # for rna-hpc-status and --dashboard
            write_storage_record(where, search.spec, search.name)
        search.tracker = tracking.make_tracker(self.s.get("mlflow"), search.results_dir, search.name)
        jobs = itertools.count(resume.next_job_num(self._existing_studies(search)))
        slots = runner.TrialSlots(self.launcher, int(self.s.get("n_jobs") or 1))
        log.info(
            "study %s in %s; %d trial slot(s) (%s)",
            search.name,
            display_url(search.spec),
            slots.size,
            "in-process launcher" if slots.inline else type(self.launcher).__name__,
        )
        if only is not None:
            stage, parent = only
            try:
                study = self._run_stage(search, stage, parent, slots, jobs)
            finally:
                slots.close()
            best = pareto_front(study.get_trials(deepcopy=False), search.directions)
            return _objective(best[0]) if best else None
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
        directions = parse_directions(to_dict(s.get("direction")))
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
        results_dir = Path(str(s.get("results_dir") or self.config.hydra.sweep.dir)).resolve()
        spec = resolve_storage_spec(s.get("storage"), results_dir / "optuna.journal")
        swept = {k: v for k, v in params.items() if k in space}
        swept.update({a.split("=", 1)[0]: a.split("=", 1)[1] for a in arguments if a.split("=", 1)[0] in space})
        plan_direction = directions[0] if len(directions) == 1 else list(directions)
        plan = plan_description(swept, plan_direction, stages, s.get("custom_search_space"))
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
            directions,
            results_dir,
        )

    def _existing_studies(self, search: Search) -> list[Any]:
        names = [stage_study_name(search.name, s.index) for s in search.stages] + [f"{search.name}-refit"]
        return [st for st in (stage_study.find_study(search.storage, n) for n in names) if st is not None]

    def _only_stage(self, search: Search) -> tuple[Stage, Any] | None:
        """``hydra.sweeper.only_stage``: (that stage, its parent study from the storage), or None (every stage)."""
        name = self.s.get("only_stage")
        if not name:
            return None
        found = [st for st in search.stages if st.name == str(name)]
        if not found:
            names = ", ".join(st.name for st in search.stages)
            raise SweepConfigError(f"hydra.sweeper.only_stage: no stage '{name}' in hydra.sweeper.stages ({names})")
        stage = found[0]
        if stage.index == 0:
            return stage, None
        previous = search.stages[stage.index - 1]
        parent_name = stage_study_name(search.name, previous.index)
        parent = stage_study.find_study(search.storage, parent_name)
        if parent is None or not select_top(parent.get_trials(deepcopy=False), 1, search.directions):
            raise SweepConfigError(
                f"hydra.sweeper.only_stage={name}: stage '{previous.name}' ({parent_name}) has no COMPLETE trial in"
                f" {search.spec}; run it first"
            )
        return stage, parent

    def _check_budget(self, search: Search, only: tuple[Stage, Any] | None = None) -> None:
        assert self.config is not None
        res = budget_mod.job_resources(self.config)
        seconds = self.s.get("epoch_seconds")
        seconds = None if seconds is None else float(seconds)
        lines = []
        for stage in [only[0]] if only else search.stages:
            study = stage_study.find_study(search.storage, stage_study_name(search.name, stage.index))
            used = resume.budget_used(study.get_trials(deepcopy=False))[0] if study else 0
            overrides = merge_overrides(search.fixed, stage.overrides)
            lines.append(
                budget_mod.budget_line(stage.name, max(stage.n_trials - used, 0), overrides, self.config, seconds, res)
            )
        if search.refit.n_seeds and not only:
            overrides = merge_overrides(search.fixed, search.refit.overrides)
            n_refit = search.refit.n_seeds * (1 if len(search.directions) == 1 else search.refit.pareto_max)
            lines.append(budget_mod.budget_line("refit", n_refit, overrides, self.config, seconds, res))
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
        study = stage_study.open_study(search.storage, name, search.directions)
        if not study.user_attrs.get("initialized"):
            space, top = stage_study.derive_space(stage, parent, search.space, search.directions)
            parent_name = parent.study_name if parent is not None else None
            stage_study.init_stage_study(
                study, stage, space, (parent_name, top), search.plan, self._pruner(search, stage)
            )
        space = stage_study.stage_space(study)
        resume.fail_orphans(study)
        self._track_earlier_trials(search, study)
        used, failed = resume.budget_used(study.get_trials(deepcopy=False))
        study.sampler = stage_study.make_sampler(stage.sampler, space, len(study.get_trials(deepcopy=False)))
        pruner = (study.user_attrs.get("pruner") or {}).get("_target_", "none")
        log.info(
            "stage %d '%s' (%s; %s, pruner %s): %s",
            stage.index,
            stage.name,
            name,
            type(study.sampler).__name__,
            pruner.rsplit(".", 1)[-1],
            ", ".join(f"{k} {v}" for k, v in study.user_attrs["space_text"].items()),
        )
        n_new = max(stage_study.stage_size(stage, space) - used, 0)
        max_failures = math.floor(float(self.s.get("max_failure_rate") or 0.0) * stage.n_trials + 1e-9)

        def new_trial() -> tuple[int, list[str], int]:
            return self._new_trial(search, stage, study, space, next(jobs))

        try:
            runner.run_trials(study, slots, n_new, new_trial, max_failures, failed, self._tracking_hook(search, study))
        finally:
            self._write_stage(search, stage, study)
        search.studies.append(study)
        return study

    @staticmethod
    def _pruner(search: Search, stage: Stage) -> Any:
        """The stage's pruner; none for several objectives (optuna prunes single-objective studies only)."""
        if len(search.directions) == 1:
            return stage.pruner
        target = str((stage_study.to_plain(stage.pruner) or {}).get("_target_", ""))
        if target and not target.endswith("NopPruner"):
            log.warning(
                "stage '%s': %d objectives, so no pruning (%s is not used)", stage.name, len(search.directions), target
            )
        return None

    @staticmethod
    def _track_earlier_trials(search: Search, study: Any) -> None:
        """Record the finished trials of a resumed stage that MLflow has no run of yet."""
        if search.tracker is None:
            return
        try:
            search.tracker.record_missing(study)
        except Exception as e:  # a tracking store problem must not stop the search; it is logged
            log.warning(
                "MLflow: earlier trials of %s not recorded in %s: %s", study.study_name, search.tracker.tracking_uri, e
            )

    @staticmethod
    def _tracking_hook(search: Search, study: Any) -> Any:
        """``on_finished(number, state)`` recording the trial in MLflow; None when tracking is off."""
        tracker = search.tracker
        if tracker is None:
            return None

        def record(number: int, state: str) -> None:
            try:
                tracker.record(study, number)
            except Exception as e:  # a tracking store problem must not stop the search; it is logged
                log.warning(
                    "MLflow: trial %s #%d not recorded in %s: %s", study.study_name, number, tracker.tracking_uri, e
                )

        return record

    def _new_trial(self, search: Search, stage: Stage, study: Any, space: dict, job_num: int) -> tuple:
        trial = study.ask(fixed_distributions=space)
        if self.hook is not None:
            self.hook(self.config, trial)
            fixed = {override_key(o) for o in (*search.fixed, *stage.overrides)}
            overlap = sorted(set(trial.params).difference(space) & fixed)
            if overlap:  # as hydra-optuna-sweeper: a parameter is either searched or fixed
                from optuna.trial import TrialState

                study.tell(trial.number, state=TrialState.FAIL)
                raise SweepConfigError(
                    f"hydra.sweeper.custom_search_space: {self.s['custom_search_space']} suggests "
                    f"{', '.join(overlap)}, which the overrides also fix; drop one of them"
                )
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

        def track(study: Any, number: int) -> None:
            hook = self._tracking_hook(search, study)
            if hook is not None:
                hook(number, "")

        return RefitContext(
            search.storage, search.name, search.directions, search.refit, search.fixed, last, self.launcher, jobs, track
        )

    # -- outputs ----------------------------------------------------------------------------------------------
    def _groups(self) -> set[str]:
        assert self.config is not None
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
        return {str(k) for k in choices if not str(k).startswith("hydra/")}

    def _write_stage(self, search: Search, stage: Stage, study: Any) -> None:
        out = search.results_dir / f"stage{stage.index}-{stage.name}"
        rows = report.trial_rows(study, f"s{stage.index}")
        report.write_summary(rows, out / "summary.csv")
        log.info("stage %d '%s' summary (%s):\n%s", stage.index, stage.name, out, report.format_table(rows))
        front = pareto_front(study.get_trials(deepcopy=False), search.directions)
        if front:
            report.write_best(out, front[0].params, self._groups(), _best_comment(study, front, search))
            report.write_optimization_results(out, front, search.directions)
        if self.s.get("plots", True):
            report.write_plots(study, out)

    def _write_final(self, search: Search, refit_study: Any) -> Any:
        rows = [r for st in search.studies for r in report.trial_rows(st, f"s{st.user_attrs['stage']}")]
        if refit_study is not None:
            rows += report.trial_rows(refit_study, "refit")
        report.write_summary(rows, search.results_dir / "summary.csv")
        last = search.studies[-1]
        front = pareto_front(last.get_trials(deepcopy=False), search.directions)
        if not front:
            return None
        comment = _best_comment(last, front, search)
        a = refit_study.user_attrs if refit_study is not None else {}
        if a.get("refit_mean") is not None:
            comment += f"\nrefit over {a['refit_n']} seeds: {a['refit_mean']:.6g} +- {a['refit_std']:.6g}"
        for sol in a.get("refit_solutions", []):
            means = ", ".join(f"{m:.6g} +- {d:.6g}" for m, d in zip(sol["mean"], sol["std"]))
            comment += f"\nrefit of #{sol['parent_trial']} over {sol['n']} seeds: {means}"
        report.write_best(search.results_dir, front[0].params, self._groups(), comment)
        results = report.write_optimization_results(search.results_dir, front, search.directions)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        if sweep_dir != search.results_dir:  # also where hydra-optuna-sweeper writes it, for the scripts reading it
            report.write_optimization_results(sweep_dir, front, search.directions)
        if self.s.get("plots", True):
            report.write_plots(search.studies, search.results_dir)
        log.info("search %s done: %s\nbest params: %s (%s)", search.name, comment, results, "best_params.yaml")
        return _objective(front[0])


def parse_directions(value: Any) -> list[str]:
    """``hydra.sweeper.direction``: one of minimize/maximize, or a list of them (one per objective)."""
    items = value if isinstance(value, (list, tuple)) else [value if value is not None else "minimize"]
    directions = [str(getattr(d, "name", d)) for d in items]
    bad = [d for d in directions if d not in ("minimize", "maximize")]
    if bad or not directions:
        raise SweepConfigError(f"hydra.sweeper.direction: 'minimize' or 'maximize', or a list of them, got {value!r}")
    return directions


def _objective(trial: Any) -> Any:
    """What the sweep returns: the best value, or the values of the first Pareto-front trial."""
    return trial.values[0] if len(trial.values) == 1 else list(trial.values)


def _best_comment(study: Any, front: list[Any], search: Search) -> str:
    best = front[0]
    values = ", ".join(f"{v:.6g}" for v in best.values)
    text = f"best of {study.study_name}: trial #{best.number}, value {values} ({search.direction_text})"
    if len(search.directions) > 1:
        text += f"; one of {len(front)} Pareto-front trials (optimization_results.yaml lists them all)"
    return text


def _representative(dist: Any) -> Any:
    return dist.choices[0] if hasattr(dist, "choices") else dist.low


def to_dict(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
