"""``validate(cfg)``: every cross-field rule in one place, checked after composition and before any work.

Composition already rejects unknown keys and wrong types (the ``base_*`` schemas). This module checks what a schema
cannot: missing values, dimensions that must agree between pipeline stages, paths, and launcher/trainer consistency.
It collects every problem and raises one ``ConfigError`` listing ``key: why``. It never imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rna_hpc.errors import ConfigError

Rule = Callable[[DictConfig], list[str]]

# nn.Linear names in the model that LoRA may adapt, and the top-level stages that can stay trainable.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "g_proj")
MODEL_STAGES = ("embedding", "trunk", "heads", "merger", "generator")
RESUME_POLICIES = ("auto", "never", "ignore_config_change")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
METRICS = ("val/tm", "val/rmsd", "val/loss", "train/loss")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def missing_values(cfg: DictConfig) -> list[str]:
    """Every ``???`` left in the composed config (outside ``hydra``)."""
    body = {k: v for k, v in cfg.items() if k != "hydra"} if isinstance(cfg, DictConfig) else cfg
    return [f"{k}: missing value (set it on the command line: {k}=...)" for k in sorted(OmegaConf.missing_keys(body))]


def model_dims(cfg: DictConfig) -> list[str]:
    """Dimensions shared by trunk, heads, merger and generator must agree; heads must divide their dims."""
    m = cfg.get("model")
    if m is None:
        return []
    problems: list[str] = []
    c_s, c_z = m.trunk.c_s, m.trunk.c_z
    expected_in = c_s + 2 * m.heads.n_torsions
    if m.merger.single_in != expected_in:
        problems.append(
            f"model.merger.single_in: is {m.merger.single_in}, "
            f"must equal trunk.c_s + 2 * heads.n_torsions = {expected_in}"
        )
    for key in ("heads.c_z", "merger.c_z", "generator.c_z"):
        if _get(m, key) != c_z:
            problems.append(f"model.{key}: is {_get(m, key)}, must equal model.trunk.c_z = {c_z}")
    if m.heads.c_s != c_s:
        problems.append(f"model.heads.c_s: is {m.heads.c_s}, must equal model.trunk.c_s = {c_s}")
    if m.generator.c_cond != m.merger.c_cond:
        problems.append(
            f"model.generator.c_cond: is {m.generator.c_cond}, must equal model.merger.c_cond = {m.merger.c_cond}"
        )
    for key, dim, heads in (("trunk", c_s, m.trunk.n_heads), ("generator", m.generator.c_a, m.generator.n_heads)):
        if heads < 1 or dim % heads:
            problems.append(f"model.{key}.n_heads: {heads} does not divide its width {dim}")
    if m.heads.distogram_min >= m.heads.distogram_max:
        problems.append("model.heads.distogram_min: must be below distogram_max")
    for key in (
        "trunk.n_blocks",
        "generator.n_blocks",
        "generator.n_steps",
        "generator.n_samples",
        "heads.distogram_bins",
    ):
        if _get(m, key) < 1:
            problems.append(f"model.{key}: must be >= 1, is {_get(m, key)}")
    return problems


def lora_settings(cfg: DictConfig) -> list[str]:
    lora = cfg.get("lora")
    if lora is None or not lora.enabled:
        return []
    problems = []
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
    if t.max_epochs < 1 and t.max_steps < 1:
        problems.append("trainer.max_epochs: set max_epochs or max_steps to a positive budget")
    return problems


def run_settings(cfg: DictConfig) -> list[str]:
    problems = []
    if _get(cfg, "resume") not in RESUME_POLICIES:
        problems.append(f"resume: {_get(cfg, 'resume')!r} not in {list(RESUME_POLICIES)}")
    if _get(cfg, "objective") not in METRICS:
        problems.append(f"objective: {_get(cfg, 'objective')!r} is never logged; choose from {list(METRICS)}")
    if _get(cfg, "checkpoint.mode") not in ("min", "max"):
        problems.append(f"checkpoint.mode: must be min or max, is {_get(cfg, 'checkpoint.mode')!r}")
    if _get(cfg, "checkpoint.monitor") not in METRICS:
        problems.append(
            f"checkpoint.monitor: {_get(cfg, 'checkpoint.monitor')!r} is never logged; choose from {list(METRICS)}"
        )
    if (_get(cfg, "lr") or 0) <= 0:
        problems.append(f"lr: must be positive, is {_get(cfg, 'lr')}")
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


RULES: tuple[Rule, ...] = (
    missing_values,
    model_dims,
    lora_settings,
    data_settings,
    paths_exist,
    trainer_settings,
    run_settings,
    launcher_settings,
)


def collect_problems(cfg: DictConfig) -> list[str]:
    """Every problem of the composed config, as ``key: why`` lines (empty when valid)."""
    problems: list[str] = []
    for rule in RULES:
        try:
            problems.extend(rule(cfg))
        except (
            Exception
        ) as err:  # a rule tripping over an earlier problem (e.g. a missing value) must not hide the rest
            if not problems:
                problems.append(f"{rule.__name__}: {type(err).__name__}: {err}")
    return problems


def validate(cfg: DictConfig) -> None:
    """Raise one ``ConfigError`` listing every problem of ``cfg``; return quietly when it is consistent."""
    problems = collect_problems(cfg)
    if problems:
        raise ConfigError(problems)
