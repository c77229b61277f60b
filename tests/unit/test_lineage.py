"""deterministic=true switches torch to deterministic algorithms and fixes the cuBLAS workspace."""

from __future__ import annotations

import os
import subprocess
import sys

from omegaconf import OmegaConf

from rna_hpc.job.lineage import CUBLAS_WORKSPACE, data_hash


def test_apply_determinism_sets_torch_flags_and_cublas_workspace() -> None:
    code = (
        "import os, torch\n"
        "from rna_hpc.job.lineage import apply_determinism\n"
        "apply_determinism(False)\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "apply_determinism(True)\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,"
        " os.environ['CUBLAS_WORKSPACE_CONFIG'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", CUBLAS_WORKSPACE]


def test_trainer_deterministic_follows_the_top_level_key() -> None:
    from hydra import compose, initialize_config_dir

    from rna_hpc.config import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["deterministic=true"])
        default = compose("train")
    assert cfg.trainer.deterministic is True and default.trainer.deterministic is False
    assert OmegaConf.select(cfg, "trainer.max_time") is None


def test_data_hash_is_the_feature_cache_key() -> None:
    class Report:
        cache_path = "/cache/" + "ab" * 32 + ".pt"

    class Prepared:
        report = Report()

    class Module:
        data = Prepared()

    assert data_hash(Module()) == "ab" * 32
    assert data_hash(object()) is None


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


def test_each_pipeline_stage_depends_on_every_module_its_entry_point_imports() -> None:
    """A change to any module a stage runs re-runs the stage: dvc.yaml's code deps cover the import closure."""
    import re
    from pathlib import Path

    import grimp
    import yaml

    repo = Path(__file__).resolve().parents[2]
    graph = grimp.build_graph("rna_hpc")
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert set(stages) == {"prepare", "train", "predict", "evaluate"}
    for name, stage in stages.items():
        entry = re.search(r"python -m (rna_hpc\.\w+)", stage["cmd"]).group(1)
        deps = [repo / d for d in stage["deps"] if "${" not in d]
        for module in sorted(graph.find_upstream_modules(entry) | {entry}):
            base = repo / module.replace(".", "/")
            path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            assert any(path == d or d in path.parents for d in deps), f"dvc.yaml stage {name}: {path} not in deps"
