"""Plan a sweep before anything is submitted: compose every job, check it, group the jobs by resource shape.

Each job's config is what the node will compose (``load_sweep_config``), built quickly: the sweep is composed once per
distinct set of structural overrides (config groups, Hydra's own keys, deletions) and each job's plain value overrides
are applied to a copy, exactly as Hydra applies them after composing the defaults list. Every job then goes through
the launcher's checks (``preflight``) and the app's declared checks (``rna_hpc.config.checks``), with
``hydra.job.num`` and the run dir filled as on the node. One ``SweepRejected`` lists every problem of every job,
tagged ``[job #n]``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from rna_hpc import compat
from rna_hpc.config.checks import Check, run_checks
from rna_hpc.errors import ConfigError
from rna_hpc.launch import preflight, resources
from rna_hpc.launch.identity import RunIdentity


class SweepRejected(ConfigError, CompactHydraException):
    """A sweep with problems; Hydra prints its message without a traceback."""


@dataclass
class PlannedJob:
    """One job of the sweep: its Hydra job number, overrides and resolved launcher parameters."""

    num: int
    overrides: list[str]
    params: dict[str, Any]
    identity: RunIdentity | None = None  # a training job's run dir and shared dir (results, error.json)
    run_dir: str | None = None  # hydra.runtime.output_dir, for any app

    @property
    def shared_dir(self) -> Path | None:
        return self.identity.shared_dir if self.identity is not None else None

    @property
    def dirs(self) -> tuple[str, str | None] | None:
        """``(run dir, shared dir)`` for the sweep record (no shared dir for an app without rna_hpc's layout)."""
        if self.identity is not None:
            return str(self.identity.run_dir), str(self.identity.shared_dir)
        return (self.run_dir, None) if self.run_dir else None


@dataclass
class ShapeGroup:
    """Jobs with the same resolved launcher parameters: one executor, one or more Slurm arrays."""

    params: dict[str, Any]
    jobs: list[PlannedJob] = field(default_factory=list)
    executor: Any = None


class Problems:
    """``key: why`` lines, each with the jobs it concerns."""

    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.where: dict[str, list[int]] = {}

    def add(self, message: str, *nums: int) -> None:
        self.where.setdefault(message, []).extend(nums)

    def lines(self) -> list[str]:
        out = []
        for message, nums in self.where.items():
            nums = sorted(set(nums))
            if self.n_jobs > 1 and nums and len(nums) < self.n_jobs:
                message += " [job " + ", ".join(f"#{n}" for n in nums) + "]"
            out.append(message)
        return out


class JobComposer:
    """Each job's config as ``load_sweep_config`` composes it, with one full composition per structural variant."""

    def __init__(self, config_loader: Any, master: DictConfig) -> None:
        self.loader, self.master = config_loader, master
        self.parser = OverridesParser.create()
        # pickled where possible (loading a copy is 4x faster than deepcopy)
        self.bases: dict[tuple[str, ...], bytes | DictConfig] = {}

    def __getstate__(self) -> dict[str, Any]:  # travels to the nodes without its compositions
        return {"loader": self.loader, "master": self.master}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["loader"], state["master"])  # type: ignore[misc]

    @functools.cached_property
    def groups(self) -> frozenset[str]:
        """Config groups known before composing a job: the search path's and the master's chosen ones."""
        found: set[str] = set(self.master.hydra.runtime.choices.keys())
        pending = [""]
        while pending:
            parent = pending.pop()
            for name in self.loader.list_groups(parent):
                path = f"{parent}/{name}" if parent else name
                found.add(path)
                pending.append(path)
        return frozenset(found)

    def _structural(self, override: Any) -> bool:
        """Whether an override changes what is composed (a config group, Hydra's keys, a deletion) rather than a
        value; an undotted key unknown to the master config may name a group of an added search path."""
        key = override.key_or_group
        if override.is_hydra_override() or override.package is not None or override.is_delete() or "/" in key:
            return True
        if "." in key:
            return False
        return key in self.groups or key not in self.master

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        """The composed config of the job with these sweep overrides."""
        parsed = self.parser.parse_overrides(list(overrides))
        structural = tuple(o.input_line for o in parsed if self._structural(o))
        base = self.bases.get(structural)
        if base is None:
            base = self.bases[structural] = _frozen(self.loader.load_sweep_config(self.master, list(structural)))
        cfg = pickle.loads(base) if isinstance(base, bytes) else copy.deepcopy(base)
        values = [o for o in parsed if not self._structural(o)]
        if values:
            compat.apply_value_overrides(cfg, values)
            app = [o for o in parsed if not o.is_hydra_override()]
            with open_dict(cfg.hydra):
                cfg.hydra.overrides.task = [o.input_line for o in app]
                cfg.hydra.job.override_dirname = compat.override_dirname(cfg, app)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg


def _frozen(cfg: DictConfig) -> bytes | DictConfig:
    try:
        return pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # a schema class pickle cannot find by name
        return cfg


class SweepConfigLoader(ConfigLoader):
    """Hydra's config loader with a fast ``load_sweep_config`` (``JobComposer``); everything else is delegated.

    The launchers install it in the sweep's ``HydraContext``, so a sweeper's own early check of each batch and the
    launcher's plan both compose every job the fast way. On a node (after unpickling) it composes as Hydra does.
    """

    def __init__(self, inner: ConfigLoader) -> None:
        self.inner = inner
        self._composer: JobComposer | None = None
        self._composed: dict[tuple[str, ...], DictConfig] = {}  # the sweeper's early check, kept for the plan

    def __getstate__(self) -> dict[str, Any]:  # travels to the nodes without its compositions
        return {"inner": self.inner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"])  # type: ignore[misc]
        self.on_node = True

    on_node = False

    def composer(self, master: DictConfig) -> JobComposer:
        if self._composer is None or self._composer.master is not master:
            self._composer = JobComposer(self.inner, master)
            self._composed.clear()
        return self._composer

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if self.on_node:  # one job: nothing to share
            return self.inner.load_sweep_config(master_config, sweep_overrides)
        cfg = self.composer(master_config).compose(sweep_overrides)
        self._composed[tuple(sweep_overrides)] = cfg
        return cfg

    def job_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """A job's config for the plan, composed once per job: the sweeper's early check is reused if it ran."""
        cfg = self._composed.pop(tuple(sweep_overrides), None)
        return cfg if cfg is not None else self.composer(master_config).compose(sweep_overrides)

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.inner.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.inner.get_search_path()

    def get_sources(self) -> Any:
        return self.inner.get_sources()

    def list_groups(self, parent_name: str) -> Any:
        return self.inner.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.compute_defaults_list(*args, **kwargs)


@contextmanager
def as_running_job(cfg: DictConfig, num: int) -> Iterator[None]:
    """Fill the job's ``hydra.job.num`` and ``hydra.runtime.output_dir`` as ``run_job`` will on the node, and make it
    the current ``HydraConfig`` (``${hydra:...}`` interpolations) while checking it."""
    with open_dict(cfg.hydra):
        cfg.hydra.job.num = num
        cfg.hydra.job.id = f"job_id_for_{num}"
        cfg.hydra.runtime.output_dir = os.path.abspath(
            os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))
        )
    with compat.current_hydra_config(cfg):
        yield


def _identity(cfg: DictConfig, num: int, problems: Problems) -> RunIdentity | None:
    """The run identity of a job with rna_hpc's run layout (``paths.shared_dir``, ``experiment_name``), else None."""
    try:
        if OmegaConf.select(cfg, "paths.shared_dir") is None or OmegaConf.select(cfg, "experiment_name") is None:
            return None
        return RunIdentity.from_hydra(cfg, cfg.hydra)
    except ConfigError as err:
        for message in err.problems:
            problems.add(message, num)
    except Exception:  # an unresolvable path is reported by the path checks
        pass
    return None


def check_job(
    compose: Callable[[list[str]], DictConfig],
    num: int,
    overrides: list[str],
    checks: Sequence[Check],
    problems: Problems,
    slurm: bool,
    unwritable: Callable[[Path], str | None],
) -> PlannedJob | None:
    """Compose and check one job; its problems go to ``problems``; None when it does not compose."""
    try:
        cfg = compose(overrides)
        params = preflight.launcher_params(cfg)
    except Exception as err:  # a job whose overrides do not compose: name it and go on with the others
        problems.add(f"job #{num} {overrides}: does not compose: {preflight.one_line(err)}", num)
        return None
    with as_running_job(cfg, num):
        for message in run_checks(checks, cfg):
            problems.add(preflight.unwrap(message), num)
        for message in preflight.job_problems(cfg, params, slurm=slurm, unwritable=unwritable):
            problems.add(message, num)
        identity = _identity(cfg, num, problems)
        run_dir = str(cfg.hydra.runtime.output_dir)
    return PlannedJob(num, overrides, params, identity, run_dir)


def plan_sweep(
    compose: Callable[[list[str]], DictConfig],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    checks: Sequence[Check],
    slurm: bool,
    make_executor: Callable[[dict[str, Any]], Any],
) -> list[ShapeGroup]:
    """Compose and check every job, group them by resource shape; raise ``SweepRejected`` on any problem."""
    problems = Problems(len(job_overrides))
    groups: dict[str, ShapeGroup] = {}
    unwritable = functools.lru_cache(maxsize=None)(preflight.unwritable)  # one probe per folder and sweep
    for num, overrides in enumerate(job_overrides, start=initial_job_idx):
        job = check_job(compose, num, list(overrides), checks, problems, slurm, unwritable)
        if job is not None:
            key = json.dumps(job.params, sort_keys=True, default=str)
            groups.setdefault(key, ShapeGroup(job.params)).jobs.append(job)
    if slurm:
        shapes = [g.params for g in groups.values()]
        for message in preflight.partition_problems(shapes) + resources.node_limit_problems(shapes):
            problems.add(message)
    if not problems.where:  # executors only for a sound sweep: the local one creates its folder
        for group in groups.values():
            try:
                group.executor = make_executor(group.params)
            except Exception as err:  # submitit rejects a parameter: report it with the rest
                problems.add(f"hydra.launcher: submitit rejects the parameters: {preflight.one_line(err)}")
    if problems.where:
        raise SweepRejected(problems.lines())
    return list(groups.values())


def array_chunks(jobs: Sequence[PlannedJob], max_array_size: int | None) -> list[list[PlannedJob]]:
    """The jobs of one shape split into arrays of at most ``max_array_size`` tasks (Slurm's MaxArraySize)."""
    size = max_array_size or len(jobs) or 1
    return [list(jobs[k : k + size]) for k in range(0, len(jobs), size)]
