"""``validate(cfg, entry)``: every cross-field rule in one place, checked after composition and before any work.

Composition already rejects unknown keys and wrong types (the ``base_*`` schemas). This module checks what a schema
cannot: missing values, dimensions that must agree between pipeline stages, paths, and launcher/trainer consistency.
Each entry point (``train``, ``prepare``, ``predict``, ``evaluate``) has its rule set; ``entry_checks(entry)`` is the
same set as a check for the launchers (``rna_hpc.launch.validated_by``), so a sweep is refused before any job is
submitted.
It collects every problem and raises one ``ConfigError`` listing ``key: why``. It never imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from rna_hpc import compat
from rna_hpc.errors import ConfigError

Rule = Callable[[DictConfig], list[str]]

# nn.Linear names in the model that LoRA may adapt, and the top-level stages that can stay trainable.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "g_proj")
MODEL_STAGES = ("embedding", "trunk", "heads", "merger", "generator")
PRIOR_KINDS = ("ss_model", "template", "aform", "none")  # what Stage D refines (rna_hpc.model.prior)
RESUME_POLICIES = ("auto", "never", "ignore_config_change")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
METRICS = ("val/tm", "val/rmsd", "val/loss", "train/loss")
# where predict's candidate structures come from (rna_hpc.model.candidates); the template sources need templates_dir
CANDIDATE_SOURCES = ("model", "model_template", "fold", "ss_model", "template", "helix")
NEEDS_TEMPLATES = ("model_template", "template")
# how the secondary-structure candidates after the MFE one vary (rna_hpc.evaluation.baselines)
SS_ENSEMBLES = ("tilt", "boltzmann")
# how template hits are found and ranked (rna_hpc.evaluation.templates)
TEMPLATE_SEARCHES = ("sequence", "structure")
# Lightning precisions rna_hpc trains with; fp16 AMP Lightning does not run on CPU (it swaps in bf16-mixed)
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
CPU_REFUSED_PRECISIONS = ("16-mixed",)
_NCCL_VAR = re.compile(r"(TORCH_)?NCCL_[A-Z0-9_]+")
NCCL_DEBUG_LEVELS = ("VERSION", "WARN", "INFO", "TRACE")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DHMS = re.compile(r"^(\d+):(\d+):(\d+):(\d+)$")


def objective_names(objective: object) -> list[str]:
    """The metric names of ``objective``: one name, or a list of them (a multi-objective search)."""
    if isinstance(objective, (list, tuple, ListConfig)):
        return [str(o) for o in objective]
    return [str(objective)]


def _get(cfg: DictConfig, key: str, default: object = None) -> object:
    return OmegaConf.select(cfg, key, default=default, throw_on_missing=False)


def _name(value: object) -> str:
    """An enum's value or the plain string (enums come back from structured configs as members)."""
    return str(getattr(value, "value", value))


def _launcher_target(cfg: DictConfig) -> str:
    """The Hydra launcher of this run: from the composed config, else from the running Hydra app."""
    target = _get(cfg, "hydra.launcher._target_")
    if target is None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            target = OmegaConf.select(HydraConfig.get(), "launcher._target_")
    return str(target or "")


def max_time_minutes(value: object) -> float | None:
    """Minutes of a ``trainer.max_time`` budget ``"DD:HH:MM:SS"`` (None when unset); ValueError when malformed."""
    if value is None:
        return None
    match = _DHMS.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not DD:HH:MM:SS")
    days, hrs, mins, secs = (int(g) for g in match.groups())
    return days * 1440.0 + hrs * 60.0 + mins + secs / 60.0


def missing_values(cfg: DictConfig) -> list[str]:
    """Every ``???`` left in the composed config (outside ``hydra``), found without resolving interpolations."""
    return [f"{k}: missing value (set it on the command line: {k}=...)" for k in compat.missing_keys(cfg, ("hydra",))]


def model_problems(m: object) -> list[str]:
    """Shape rules of one model config (a DictConfig node or a ModelConfig): every ``key: why``.

    Dimensions shared by trunk, heads, merger and generator must agree; heads must divide their widths.
    """
    t, h, mg, g = m.trunk, m.heads, m.merger, m.generator
    problems = []
    expected_in = t.c_s + 2 * h.n_torsions
    if mg.single_in != expected_in:
        problems.append(
            f"model.merger.single_in: {mg.single_in} must equal trunk.c_s + 2 * heads.n_torsions = {expected_in}"
        )
    for key, value, want, source in [
        ("heads.c_s", h.c_s, t.c_s, "trunk.c_s"),
        ("heads.c_z", h.c_z, t.c_z, "trunk.c_z"),
        ("merger.c_z", mg.c_z, t.c_z, "trunk.c_z"),
        ("generator.c_z", g.c_z, t.c_z, "trunk.c_z"),
        ("generator.c_cond", g.c_cond, mg.c_cond, "merger.c_cond"),
    ]:
        if value != want:
            problems.append(f"model.{key}: {value} must equal {source} = {want}")
    if h.n_torsions != 2:
        problems.append(f"model.heads.n_torsions: {h.n_torsions} must be 2 (virtual C1' bond angle and dihedral)")
    for key, width, heads in (("trunk", t.c_s, t.n_heads), ("generator", g.c_a, g.n_heads)):
        if heads < 1 or width % heads:
            problems.append(f"model.{key}.n_heads: {heads} must divide the width {width}")
    for key, value in (
        ("trunk.n_blocks", t.n_blocks),
        ("generator.n_blocks", g.n_blocks),
        ("generator.n_steps", g.n_steps),
    ):
        if value < 1:
            problems.append(f"model.{key}: {value} must be at least 1")
    if g.n_samples < 1:
        problems.append(f"model.generator.n_samples: {g.n_samples} must be at least 1")
    if h.distogram_bins < 2 or h.distogram_max <= h.distogram_min:
        problems.append("model.heads: distogram needs at least 2 bins and distogram_max > distogram_min")
    if t.pair_chunk_size is not None and t.pair_chunk_size < 1:
        problems.append(f"model.trunk.pair_chunk_size: {t.pair_chunk_size} must be null or at least 1")
    if g.prior not in PRIOR_KINDS:
        problems.append(f"model.generator.prior: {g.prior!r} is not one of {', '.join(PRIOR_KINDS)}")
    return problems


def model_dims(cfg: DictConfig) -> list[str]:
    m = cfg.get("model")
    return [] if m is None else model_problems(m)


def lora_settings(cfg: DictConfig) -> list[str]:
    lora = cfg.get("lora")
    if lora is None or not lora.enabled:
        return []
    problems = []
    if not _get(cfg, "model.init_from"):
        problems.append("model.init_from: LoRA fine-tuning needs a pretrained base checkpoint (model.init_from=<ckpt>)")
    if lora.r < 1:
        problems.append(f"lora.r: must be >= 1, is {lora.r}")
    unknown = [t for t in lora.target_modules if t not in LORA_TARGETS]
    if unknown or not lora.target_modules:
        problems.append(f"lora.target_modules: {unknown or '[]'} not in the model; choose from {list(LORA_TARGETS)}")
    bad = [t for t in lora.trainable if t not in MODEL_STAGES]
    if bad:
        problems.append(f"lora.trainable: {bad} are not model stages; choose from {list(MODEL_STAGES)}")
    return problems


def paths_exist(cfg: DictConfig) -> list[str]:
    """Inputs named by the config must exist (a missing path fails here, not deep inside a job)."""
    problems = []
    data = cfg.get("data")
    if data is not None and _name(data.format) != "synthetic":
        if not data.dir:
            problems.append(f"data.dir: required for data.format={data.format}")
        elif not Path(data.dir).is_dir():
            problems.append(f"data.dir: no such directory: {data.dir}")
    if data is not None and _name(data.split) == "split_file":
        if not data.split_file or not Path(data.split_file).is_file():
            problems.append(f"data.split_file: no such file: {data.split_file}")
    init_from = _get(cfg, "model.init_from")
    if init_from and not Path(str(init_from)).is_file():
        problems.append(f"model.init_from: no such checkpoint: {init_from}")
    return problems


def data_settings(cfg: DictConfig) -> list[str]:
    data = cfg.get("data")
    if data is None:
        return []
    problems = []
    if not 0 < data.fraction <= 1:
        problems.append(f"data.fraction: must be in (0, 1], is {data.fraction}")
    if not 0 <= data.val_fraction < 1:
        problems.append(f"data.val_fraction: must be in [0, 1), is {data.val_fraction}")
    if data.min_length > data.max_length:
        problems.append(f"data.min_length: {data.min_length} exceeds data.max_length {data.max_length}")
    if data.batch_size < 1 or data.val_batch_size < 1:
        problems.append("data.batch_size: must be >= 1")
    if _name(data.split) == "temporal" and not (data.temporal_cutoff and _DATE.match(str(data.temporal_cutoff))):
        problems.append(
            f"data.temporal_cutoff: a YYYY-MM-DD date is required with split=temporal, got {data.temporal_cutoff}"
        )
    return problems


def trainer_settings(cfg: DictConfig) -> list[str]:
    t = cfg.get("trainer")
    if t is None:
        return []
    problems = []
    if t.accelerator not in ACCELERATORS:
        problems.append(f"trainer.accelerator: {t.accelerator!r} not in {list(ACCELERATORS)}")
    if t.devices < 1 or t.num_nodes < 1:
        problems.append("trainer.devices / trainer.num_nodes: must be >= 1 (one process per device)")
    try:
        minutes = max_time_minutes(t.get("max_time"))
    except ValueError:
        minutes = None
        problems.append(f"trainer.max_time: {t.max_time!r} is not a wall-clock budget DD:HH:MM:SS (e.g. 00:00:30:00)")
    else:
        if minutes is not None and minutes <= 0:
            problems.append(f"trainer.max_time: {t.max_time!r} must be a positive duration")
    if t.max_epochs < 1 and t.max_steps < 1 and not minutes:
        problems.append("trainer.max_epochs: set max_epochs, max_steps or max_time to a positive budget")
    precision = str(t.precision)
    if precision not in PRECISIONS:
        problems.append(f"trainer.precision: {precision!r} not in {list(PRECISIONS)}")
    elif t.accelerator == "cpu" and precision in CPU_REFUSED_PRECISIONS:
        problems.append(
            f"trainer.precision: {precision} needs a GPU (Lightning has no fp16 AMP on CPU); "
            "use 32-true or bf16-mixed with trainer.accelerator=cpu"
        )
    return problems


def ddp_settings(cfg: DictConfig) -> list[str]:
    """DDP timeout and bucket size positive; NCCL variables named and valued as NCCL reads them."""
    d = cfg.get("ddp")
    if d is None:
        return []
    problems = []
    if d.timeout_min <= 0:
        problems.append(f"ddp.timeout_min: must be positive, is {d.timeout_min}")
    if d.bucket_cap_mb < 1:
        problems.append(f"ddp.bucket_cap_mb: must be >= 1, is {d.bucket_cap_mb}")
    for key, value in d.nccl_env.items():
        if not _NCCL_VAR.fullmatch(str(key)):
            problems.append(f"ddp.nccl_env.{key}: not an NCCL variable (NCCL_* or TORCH_NCCL_*)")
        elif not re.fullmatch(r"[\w.,:=/+-]*", str(value)):
            problems.append(f"ddp.nccl_env.{key}: {value!r} contains spaces, quotes or newlines")
        elif key == "NCCL_DEBUG" and str(value) not in NCCL_DEBUG_LEVELS:
            problems.append(f"ddp.nccl_env.NCCL_DEBUG: {value!r} not in {list(NCCL_DEBUG_LEVELS)}")
        elif key == "TORCH_NCCL_ASYNC_ERROR_HANDLING" and str(value) not in ("0", "1", "2", "3"):
            problems.append(f"ddp.nccl_env.TORCH_NCCL_ASYNC_ERROR_HANDLING: {value!r} must be 0, 1, 2 or 3")
    return problems


def run_settings(cfg: DictConfig) -> list[str]:
    problems = []
    if _get(cfg, "resume") not in RESUME_POLICIES:
        problems.append(f"resume: {_get(cfg, 'resume')!r} not in {list(RESUME_POLICIES)}")
    for name in objective_names(_get(cfg, "objective")):
        if name not in METRICS:
            problems.append(f"objective: {name!r} is never logged; choose from {list(METRICS)}")
    if _get(cfg, "checkpoint.mode") not in ("min", "max"):
        problems.append(f"checkpoint.mode: must be min or max, is {_get(cfg, 'checkpoint.mode')!r}")
    if _get(cfg, "checkpoint.monitor") not in METRICS:
        problems.append(
            f"checkpoint.monitor: {_get(cfg, 'checkpoint.monitor')!r} is never logged; choose from {list(METRICS)}"
        )
    ema = _get(cfg, "optim.ema_decay", 0.0) or 0.0
    if not 0 <= ema < 1:
        problems.append(f"optim.ema_decay: must be in [0, 1) (0: off), is {ema}")
    if (_get(cfg, "lr") or 0) <= 0:
        problems.append(f"lr: must be positive, is {_get(cfg, 'lr')}")
    return problems + loss_settings(cfg)


def loss_settings(cfg: DictConfig) -> list[str]:
    """Loss weights are not negative (0 turns a term off); a rollout takes at least one denoising step."""
    loss = _get(cfg, "loss")
    if loss is None:
        return []
    problems = [
        f"loss.{key}: must be >= 0, is {value}" for key, value in loss.items() if key != "rollout_steps" and value < 0
    ]
    if loss.get("rollout_steps", 1) < 1:
        problems.append(f"loss.rollout_steps: must be >= 1, is {loss.rollout_steps}")
    return problems


def launcher_settings(cfg: DictConfig) -> list[str]:
    """A single-process launcher cannot run DDP: Lightning would re-run argv (the whole multirun) in each child."""
    target = _launcher_target(cfg)
    devices = (_get(cfg, "trainer.devices", 1) or 1) * (_get(cfg, "trainer.num_nodes", 1) or 1)
    if devices > 1 and (not target or target.endswith("BasicLauncher")):
        return [
            f"trainer.devices: {devices} processes need a launcher that starts one process per device; "
            "use launcher=local (submitit, this machine) or launcher=slurm"
        ]
    return []


def _absent_files(cfg: DictConfig, keys: dict[str, str]) -> list[str]:
    """``key: no such <what>: <path>`` for each set key (``{key: what}``) whose file does not exist."""
    problems = []
    for key, what in keys.items():
        value = _get(cfg, key)
        if value is not None and value != "???" and not Path(str(value)).is_file():
            problems.append(f"{key}: no such {what}: {value}")
    return problems


def predict_inputs(cfg: DictConfig) -> list[str]:
    """The checkpoint and input exist; candidate sources are known and have the templates they need."""
    problems = _absent_files(cfg, {"ckpt": "checkpoint", "input": "file"})
    candidates = list(_get(cfg, "candidates") or [])
    unknown = [c for c in candidates if c not in CANDIDATE_SOURCES]
    if unknown or not candidates:
        problems.append(f"candidates: {unknown or '[]'} not in {list(CANDIDATE_SOURCES)}")
    needs = [c for c in candidates if c in NEEDS_TEMPLATES]
    templates_dir = _get(cfg, "templates_dir")
    if needs and not templates_dir:
        problems.append(f"templates_dir: required when candidates include {', '.join(needs)}")
    if templates_dir and not Path(str(templates_dir), "train_labels.csv").is_file():
        problems.append(f"templates_dir: no train_labels.csv in {templates_dir}")
    ensemble = _get(cfg, "ss_ensemble", "tilt")
    if ensemble not in SS_ENSEMBLES:
        problems.append(f"ss_ensemble: {ensemble!r} is not one of {', '.join(SS_ENSEMBLES)}")
    search = _get(cfg, "template_search", "structure")
    if search not in TEMPLATE_SEARCHES:
        problems.append(f"template_search: {search!r} is not one of {', '.join(TEMPLATE_SEARCHES)}")
    problems.extend(fold_settings(cfg))
    if (_get(cfg, "n_predictions") or 0) < 1:
        problems.append("n_predictions: must be >= 1")
    if _get(cfg, "trainer.devices", 1) != 1 or _get(cfg, "trainer.num_nodes", 1) != 1:
        problems.append("trainer.devices: prediction runs on one device per job; split the input across jobs")
    if _get(cfg, "trainer.accelerator", "cpu") not in ACCELERATORS:
        problems.append(f"trainer.accelerator: {_get(cfg, 'trainer.accelerator')!r} not in {list(ACCELERATORS)}")
    shards, shard = _get(cfg, "shards", 1), _get(cfg, "shard", 0)
    if shards < 1:
        problems.append(f"shards: must be >= 1, is {shards}")
    elif not 0 <= shard < shards:
        problems.append(f"shard: {shard} is not in [0, shards={shards})")
    return problems


def fold_settings(cfg: DictConfig) -> list[str]:
    """The ``fold`` candidates' optimisation: at least one step, positive sizes, weights not negative."""
    fold = _get(cfg, "fold")
    if fold is None:
        return []
    problems = []
    if fold.steps < 1:
        problems.append(f"fold.steps: must be >= 1, is {fold.steps}")
    for key in ("lr", "window", "bond_length"):
        if fold[key] <= 0:
            problems.append(f"fold.{key}: must be positive, is {fold[key]}")
    for key in ("bond_weight", "clash_weight", "prior_weight"):
        if fold[key] < 0:
            problems.append(f"fold.{key}: must be >= 0, is {fold[key]}")
    return problems


def evaluate_inputs(cfg: DictConfig) -> list[str]:
    """The predictions and labels files exist."""
    return _absent_files(cfg, {"predictions": "file", "labels": "file"})


RULES: tuple[Rule, ...] = (
    missing_values,
    model_dims,
    lora_settings,
    data_settings,
    paths_exist,
    trainer_settings,
    ddp_settings,
    run_settings,
    launcher_settings,
)
# each entry point's rules; RULES are training's
ENTRY_RULES: dict[str, tuple[Rule, ...]] = {
    "train": RULES,
    "prepare": (missing_values, data_settings, paths_exist),
    "predict": (missing_values, data_settings, predict_inputs),
    "evaluate": (missing_values, evaluate_inputs),
}


def entry_checks(entry: str) -> Rule:
    """The rules of one entry point as a single check (for ``rna_hpc.launch.validated_by``)."""
    if entry not in ENTRY_RULES:
        raise KeyError(f"no rules for entry point {entry!r}; known: {sorted(ENTRY_RULES)}")

    def check(cfg: DictConfig) -> list[str]:
        return collect_problems(cfg, entry)

    check.__qualname__ = f"rna_hpc.config.validate.entry_checks({entry!r})"
    return check


def collect_problems(cfg: DictConfig, entry: str = "train") -> list[str]:
    """Every problem of the composed config of an entry point, as ``key: why`` lines (empty when valid)."""
    problems: list[str] = []
    for rule in ENTRY_RULES[entry]:
        try:
            problems.extend(rule(cfg))
        except (
            Exception
        ) as err:  # a rule tripping over an earlier problem (e.g. a missing value) must not hide the rest
            if not problems:
                problems.append(f"{rule.__name__}: {type(err).__name__}: {err}")
    return problems


def validate(cfg: DictConfig, entry: str = "train") -> None:
    """Raise one ``ConfigError`` listing every problem of ``cfg``; return quietly when it is consistent."""
    problems = collect_problems(cfg, entry)
    if problems:
        raise ConfigError(problems)
