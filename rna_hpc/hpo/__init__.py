"""Staged hyper-parameter search: storage, search spaces, narrowing between stages, cross-job pruning.

The Hydra sweeper that drives a search lives in ``hydra_plugins.rna_hpc_staged_optuna``; the modules here hold
the logic it uses, importable and testable without Hydra's plugin machinery. Optuna is imported inside the
modules that need it, never here.
"""
