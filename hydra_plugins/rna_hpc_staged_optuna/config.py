"""Config schema of the staged Optuna sweeper (``hydra/sweeper=staged_optuna``) and its samplers and pruners.

The vocabulary is hydra-optuna-sweeper's (``params``, ``sampler``, ``direction`` (one or a list),
``storage``, ``study_name``, ``n_trials``, ``n_jobs``, ``max_failure_rate``, ``custom_search_space``) plus
``pruner``, ``stages``, ``refit``, ``only_stage``, ``mlflow`` and the budget keys. This module only declares:
optuna is imported by the sweeper when it runs.

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module before it is in
``sys.modules``, and dataclasses cannot resolve string annotations of such a module.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "rna_hpc_staged_optuna"


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    seed: int | None = None  # a resumed stage uses seed + (trials already in the study), so it never repeats


# Every argument of each Optuna 5 sampler and pruner is a key (tests/unit/test_hpo_configs.py compares them with
# the constructors); None where Optuna's default is None. Callables and sampler objects (``gamma``,
# ``constraints_func``, ``independent_sampler``, ...) are nodes with a ``_target_`` (``_partial_: true`` for a
# function), instantiated with the sampler.


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    gamma: Any = None
    weights: Any = None
    multivariate: bool | None = False
    group: bool = False
    warn_independent_sampling: bool | None = None
    constant_liar: bool = False  # True: trials in flight count as bad guesses (fewer duplicates with n_jobs > 1)
    constraints_func: Any = None


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GridSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GridSampler"
    search_space: dict[str, Any] | None = None  # filled from the stage's space (choice/range params only)


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Any = None


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = True
    independent_sampler: Any = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"  # Gaussian-process Bayesian optimization (torch, scipy)
    independent_sampler: Any = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Any = None
    warn_independent_sampling: bool = True


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"  # genetic, for multi-objective searches
    population_size: int = 50
    mutation: Any = None
    mutation_prob: float | None = None
    crossover: Any = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None
    elite_population_selection_strategy: Any = None
    child_generation_strategy: Any = None
    after_trial_strategy: Any = None


@dataclass
class NSGAIIISamplerConfig(NSGAIISamplerConfig):
    _target_: str = "optuna.samplers.NSGAIIISampler"  # NSGA-II with reference points, for many objectives
    reference_points: Any = None
    dividing_parameter: int = 3


@dataclass
class BruteForceSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.BruteForceSampler"  # every point of a discrete space once, then the stage ends
    avoid_premature_stop: bool = False


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  # no pruning until this many trials of the stage finished
    n_warmup_steps: int = 0  # no pruning before this epoch
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig(MedianPrunerConfig):
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class WilcoxonPrunerConfig:
    _target_: str = "optuna.pruners.WilcoxonPruner"  # steps are evaluation instances (folds, targets), not epochs
    p_threshold: float = 0.1
    n_startup_steps: int = 2


@dataclass
class ThresholdPrunerConfig:
    _target_: str = "optuna.pruners.ThresholdPruner"  # prune once a value leaves [lower, upper]
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class PatientPrunerConfig:
    _target_: str = "optuna.pruners.PatientPruner"  # prune after `patience` steps without improvement
    wrapped_pruner: Any = None  # a pruner node (with _target_) asked once patience ran out; None: prune then
    patience: int = 3
    min_delta: float = 0.0


@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class StageConf:
    name: str = MISSING
    n_trials: int | None = None  # None: hydra.sweeper.n_trials
    overrides: list[str] = field(default_factory=list)  # the stage's training budget: trainer.max_epochs=3 ...
    sampler: Any = None  # a node with _target_; None: hydra.sweeper.sampler
    pruner: Any = None  # None: hydra.sweeper.pruner
    top_k: int = 3  # how many of the previous stage's best trials span this stage's ranges
    margin: float = 0.25  # widening, as a fraction of the previous stage's range width (see rna_hpc.hpo.narrowing)
    enqueue: int | None = None  # previous stage's best trials re-run first; None: top_k


@dataclass
class RefitConf:
    n_seeds: int = 0  # 0: no refit
    seed_key: str = "seed"  # the config key each refit run gets its seed through
    first_seed: int = 0
    overrides: list[str] = field(default_factory=list)  # the full training budget
    pareto_max: int = 3  # several objectives: refit at most this many Pareto-front trials (extremes first)


@dataclass
class MLflowConf:
    enabled: bool = False  # record every finished trial as an MLflow run
    tracking_uri: str | None = None  # None: a file store in <results_dir>/mlruns
    experiment_name: str | None = None  # None: the study name (one experiment per search)


@dataclass
class StagedOptunaSweeperConf:
    _target_: str = "hydra_plugins.rna_hpc_staged_optuna.staged_optuna_sweeper.StagedOptunaSweeper"
    _recursive_: bool = False  # samplers and pruners are built per stage by the sweeper (seeds, grid spaces)
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])

    sampler: Any = MISSING
    pruner: Any = MISSING  # from the defaults list (median); hydra/sweeper/pruner=nop switches pruning off
    direction: Any = "minimize"  # minimize | maximize, or a list of them: one per objective the task returns
    storage: str | None = None  # journal file path or database URL; None: <results_dir>/optuna.journal
    results_dir: str | None = None  # the search's own files (summaries, optimization_results.yaml); None: sweep dir
    study_name: str | None = None  # None: the Hydra job name; stage k is <study_name>-s<k>
    n_trials: int = 20  # trials of a single-stage search, or of a stage that sets none
    n_jobs: int = 2  # trial jobs in flight; a finished trial's slot is refilled at once
    max_failure_rate: float = 0.0  # a stage stops when more than this fraction of its n_trials failed
    params: dict[str, str] | None = None  # name -> interval(...) / tag(log, interval(...)) / choice(...) / range(...)
    custom_search_space: str | None = None  # dotpath to fn(cfg, trial) suggesting extra (conditional) params
    stages: list[StageConf] = field(default_factory=list)
    refit: RefitConf = field(default_factory=RefitConf)
    epoch_seconds: float | None = None  # estimated seconds per epoch on the full data, for the budget
    max_gpu_hours: float | None = None  # refuse a plan estimated above this
    allow_over_budget: bool = False
    plots: bool = True
    only_stage: str | None = None  # run this stage alone, from the earlier stages' studies in the storage
    mlflow: MLflowConf = field(default_factory=MLflowConf)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="staged_optuna", node=StagedOptunaSweeperConf, provider=PROVIDER)
    samplers = {
        "tpe": TPESamplerConfig,
        "motpe": TPESamplerConfig,  # hydra-optuna-sweeper's multi-objective TPE: Optuna's TPESampler handles both
        "random": RandomSamplerConfig,
        "grid": GridSamplerConfig,
        "cmaes": CmaEsSamplerConfig,
        "qmc": QMCSamplerConfig,
        "gp": GPSamplerConfig,
        "nsgaii": NSGAIISamplerConfig,
        "nsgaiii": NSGAIIISamplerConfig,
        "bruteforce": BruteForceSamplerConfig,
    }
    for name, node in samplers.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
    pruners = {
        "median": MedianPrunerConfig,
        "percentile": PercentilePrunerConfig,
        "successive_halving": SuccessiveHalvingPrunerConfig,
        "hyperband": HyperbandPrunerConfig,
        "wilcoxon": WilcoxonPrunerConfig,
        "threshold": ThresholdPrunerConfig,
        "patient": PatientPrunerConfig,
        "nop": NopPrunerConfig,
    }
    for name, node in pruners.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider=PROVIDER)


register()
