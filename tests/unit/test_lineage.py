def test_env_ci_keeps_everything_under_the_working_dir_with_small_budgets() -> None:
    from hydra import compose, initialize_config_dir

    from rna_hpc.config import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["env=ci"])
    assert not cfg.paths.scratch_dir.startswith("/") and not cfg.paths.shared_dir.startswith("/")
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 2
    assert cfg.data.synthetic.n_targets == 12 and cfg.data.num_workers == 0
    assert cfg.logger.wandb.offline is True and cfg.logger.mlflow.tracking_uri.startswith("file:")


def test_env_offline_caps_wall_time_and_logs_to_files(monkeypatch) -> None:
    from hydra import compose, initialize_config_dir

    from rna_hpc.config import CONFIG_DIR

    monkeypatch.setenv("SCRATCH", "/scratch/u")
    monkeypatch.setenv("RNA_HPC_PROJECT_DIR", "/project/p")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["env=offline"])
    assert cfg.paths.scratch_dir == "/scratch/u/rna_hpc" and cfg.paths.shared_dir == "/project/p/rna_hpc"
    assert cfg.trainer.max_time == "00:23:30:00"
    assert cfg.logger.wandb.offline is True and cfg.logger.mlflow.tracking_uri == "file:/project/p/rna_hpc/mlruns"
