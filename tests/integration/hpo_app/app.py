"""A tiny Hydra app for the sweeper's tests: a noisy quadratic 'trained' for trainer.max_epochs epochs.

Each epoch it reports ``value * (epoch + 1) / max_epochs`` through ``report_and_should_prune`` (what the Lightning
callback does in a real job) and stops when the trial is pruned. Trials listed in ``fail_trials`` raise,
``nan_trials`` return NaN, ``slow_trials`` sleep ``slow_seconds`` per epoch (the others ``step_seconds``).
Returns the final value (maximize).
"""

from __future__ import annotations

import hashlib
import math
import time

import hydra
from omegaconf import DictConfig

from rna_hpc.hpo.pruning import report_and_should_prune
from rna_hpc.hpo.trial_job import is_trial_job


def objective(cfg: DictConfig) -> float:
    """Best at x=0.3, y=1.0, k=5 with opt=adam; a small deterministic noise per (params, seed)."""
    key = f"{cfg.x:.12g}|{cfg.y:.12g}|{cfg.k}|{cfg.opt.name}|{cfg.seed}".encode()
    noise = int(hashlib.sha256(key).hexdigest()[:8], 16) / 0xFFFFFFFF - 0.5
    quad = 1.0 - (cfg.x - 0.3) ** 2 - math.log10(cfg.y) ** 2 - 0.01 * (cfg.k - 5) ** 2
    return cfg.opt.scale * quad * cfg.data.fraction**0.1 + 0.01 * noise


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    number = cfg.trial.number
    if number in cfg.fail_trials and cfg.trial.stage == 0:
        raise RuntimeError(f"trial {number} fails on purpose")
    if number in cfg.nan_trials and cfg.trial.stage == 0:
        return float("nan")
    final = objective(cfg)
    epochs = int(cfg.trainer.max_epochs)
    pause = cfg.slow_seconds if number in cfg.slow_trials and cfg.trial.stage == 0 else cfg.step_seconds
    value = final
    for epoch in range(epochs):
        time.sleep(pause)
        value = final * (epoch + 1) / epochs
        if is_trial_job(cfg.trial) and report_and_should_prune(cfg.trial, epoch, value, last=epoch == epochs - 1):
            return value
    return value


if __name__ == "__main__":
    main()
