"""Hydra sweeper plugin: staged Optuna search with cross-job pruning (``hydra/sweeper=staged_optuna``)."""
