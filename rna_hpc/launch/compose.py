"""Each job's config as the node will compose it (``load_sweep_config``), built quickly.

The sweep is composed once per distinct set of structural overrides (config groups, Hydra's own keys, deletions) and
each job's plain value overrides are applied to a copy, exactly as Hydra applies them after composing the defaults
list. ``SweepConfigLoader`` puts this composition in the sweep's ``HydraContext`` and checks each job as soon as it is
composed (``plan.JobChecker``), keeping only the findings for the plan.
"""

from __future__ import annotations

import copy
import functools
import gc
import pickle
from collections.abc import Sequence
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from rna_hpc import compat
from rna_hpc.launch.plan import CheckedJob, JobChecker, not_composed


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
        """Top-level config groups (what an undotted override key may name): the search path's and the master's."""
        return frozenset(self.master.hydra.runtime.choices.keys()) | frozenset(self.loader.list_groups(""))

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

    The launchers install it in the sweep's ``HydraContext`` with their ``JobChecker``, so each job is composed once,
    the fast way, and checked right away: when the sweeper composes a batch to see that it composes, the checks run
    then and only their findings are kept for the plan (not a thousand configs). The job number is the one the next
    launch will give the job; the plan checks again any job whose number or overrides came out otherwise. On a node
    (after unpickling) it composes as Hydra does.
    """

    def __init__(self, inner: ConfigLoader) -> None:
        self.inner = inner
        self._composer: JobComposer | None = None
        self.checker: JobChecker | None = None
        self._checked: dict[tuple[int, tuple[str, ...]], CheckedJob] = {}
        self._next_num = 0
        self._collection = _PerJobCollection()

    def __getstate__(self) -> dict[str, Any]:  # travels to the nodes without its compositions
        return {"inner": self.inner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["inner"])  # type: ignore[misc]
        self.on_node = True

    on_node = False

    def composer(self, master: DictConfig) -> JobComposer:
        if self._composer is None or self._composer.master is not master:
            self._composer = JobComposer(self.inner, master)
            self._checked.clear()
        return self._composer

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if self.on_node:  # one job: nothing to share
            return self.inner.load_sweep_config(master_config, sweep_overrides)
        self._collection.next_job()
        cfg = self.composer(master_config).compose(sweep_overrides)
        if self.checker is not None:
            num, self._next_num = self._next_num, self._next_num + 1
            self._checked[(num, tuple(sweep_overrides))] = self.checker(cfg, num, sweep_overrides)
        return cfg

    def checked_job(self, master_config: DictConfig, num: int, sweep_overrides: list[str]) -> CheckedJob:
        """Job ``num`` composed and checked (by the sweeper's early composition if it ran with this number)."""
        assert self.checker is not None, "the launcher sets its checker in setup"
        found = self._checked.pop((num, tuple(sweep_overrides)), None)
        if found is not None:
            return found
        self._collection.next_job()
        try:
            cfg = self.composer(master_config).compose(sweep_overrides)
        except Exception as err:  # a job whose overrides do not compose: name it and go on with the others
            return not_composed(num, sweep_overrides, err)
        return self.checker(cfg, num, sweep_overrides)

    def launched(self, next_num: int) -> None:
        """A batch went out: the next one the sweeper composes starts at job ``next_num``."""
        self._next_num = next_num
        self._checked.clear()
        self._collection.done()

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


class _PerJobCollection:
    """Garbage collection once per job while a sweep is planned.

    Each job's config is thousands of objects in reference cycles. Left to the automatic collections, which run in
    the middle of composing the next one, the live config is promoted and swept again with the whole heap (a third
    of a 1,000-job submission's time). Here the collector runs at the start of each job, when the previous job's
    config is garbage and still young; automatic collection is only made rarer (never off) until ``done``.
    """

    def __init__(self) -> None:
        self.saved: tuple[int, ...] | None = None

    def next_job(self) -> None:
        if self.saved is None:
            self.saved = gc.get_threshold()
            gc.set_threshold(100_000, *self.saved[1:])
        gc.collect(0)

    def done(self) -> None:
        if self.saved is not None:
            gc.set_threshold(*self.saved)
            self.saved = None
