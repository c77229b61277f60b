"""A run's stable identity: the same run dir and shared dir every time the job (re)starts.

The identity comes from values fixed before the job starts: in a multirun, the sweep dir's name (resolved once by
the launcher, ``${now:...}`` included) and ``hydra.job.num``; in a single run, the run dir's name. Nothing is read
from the clock inside the job, so a requeued job finds the checkpoints of its earlier attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rna_hpc.errors import ConfigError


def _component(value: Any, key: str) -> str:
    """A value that must be usable as one directory name."""
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise ConfigError(f"{key}: {text!r} cannot name a directory (no '/', not empty, not '.' or '..')")
    return text


def _is_multirun(hydra_cfg: Any) -> bool:
    mode = hydra_cfg.get("mode")
    return getattr(mode, "name", str(mode)).upper().endswith("MULTIRUN")


def has_run_layout(cfg: Any) -> bool:
    """Whether a job's config has rna_hpc's run layout (``paths.shared_dir`` and ``experiment_name``)."""
    return (
        OmegaConf.select(cfg, "paths.shared_dir") is not None and OmegaConf.select(cfg, "experiment_name") is not None
    )


@dataclass(frozen=True)
class RunIdentity:
    """``<experiment>/<sweep id>/<job num>``: where a run works (scratch) and where its results go (shared)."""

    experiment: str
    sweep_id: str
    job_num: int
    run_dir: Path
    shared_dir: Path

    @property
    def run_id(self) -> str:
        return f"{self.experiment}/{self.sweep_id}/{self.job_num}"

    @property
    def ckpt_dir(self) -> Path:
        """The scratch checkpoint directory, ``<run dir>/ckpt``."""
        return self.run_dir / "ckpt"

    @classmethod
    def from_hydra(cls, cfg: Any, hydra_cfg: Any) -> RunIdentity:
        """The identity of the current Hydra job (``hydra_cfg`` is ``HydraConfig.get()``).

        The shared dir is ``<paths.shared_dir>/<experiment_name>/<sweep id>/<job num>``; a relative
        ``paths.shared_dir`` is taken from the directory the run was started in (``hydra.runtime.cwd``).
        """
        output_dir = hydra_cfg.runtime.get("output_dir")
        if not output_dir:
            raise ConfigError("hydra.runtime.output_dir: not set; the identity needs a Hydra job's config")
        run_dir = Path(str(output_dir))
        if _is_multirun(hydra_cfg):
            sweep_id = _component(Path(str(hydra_cfg.sweep.dir)).name, "hydra.sweep.dir")
            job_num = int(hydra_cfg.job.num)
        else:
            sweep_id = _component(run_dir.name, "hydra.run.dir")
            job_num = 0
        experiment = _component(cfg.experiment_name, "experiment_name")
        shared_root = Path(str(cfg.paths.shared_dir))
        if not shared_root.is_absolute():
            shared_root = Path(str(hydra_cfg.runtime.cwd)) / shared_root
        shared_dir = shared_root / experiment / sweep_id / str(job_num)
        return cls(experiment, sweep_id, job_num, run_dir, shared_dir)
