"""Every shipped config composes without warnings and validates; every validation rule fires with its message."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from rna_hpc.config import validate
from rna_hpc.config.validate import collect_problems
from rna_hpc.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
GROUPS = [
    "data",
    "model",
    "lora",
    "trainer",
    "optim",
    "loss",
    "logger",
    "paths",
    "env",
    "launcher",
    "debug",
    "experiment",
]
# Options that need a value or a companion override to be consistent on their own.
COMPANIONS = {
    ("trainer", "ddp"): ["launcher=local"],
    ("experiment", "full_production"): ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=1"],
}


def compose_train(overrides: list[str] | None = None) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides or [], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in a running app: ${hydra:...} resolves
    return cfg


def options() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), options(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_option_composes_without_warnings_and_validates(
    group: str, option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("RNA_HPC_PROJECT_DIR", str(tmp_path / "project"))
    overrides = [f"{group}={option}", *COMPANIONS.get((group, option), [])]
    if (group, option) in (("experiment", "lora_finetune"), ("lora", "default")):
        ckpt = tmp_path / "base.ckpt"
        ckpt.write_bytes(b"")
        overrides.append(f"model.init_from={ckpt}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = compose_train(overrides)
    assert cfg.hydra.runtime.choices[group] == option
    validate(cfg)


def test_default_config_is_the_cpu_smoke_run() -> None:
    cfg = compose_train()
    choices = cfg.hydra.runtime.choices
    assert (choices["data"], choices["model"], choices["launcher"]) == ("synthetic", "tiny", "basic")
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1
    validate(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.merger.single_in=10"], "model.merger.single_in: 10 must equal"),
        (["model.heads.c_z=7"], "model.heads.c_z: 7 must equal trunk.c_z"),
        (["model.generator.c_z=3"], "model.generator.c_z: 3 must equal"),
        (["model.heads.c_s=5"], "model.heads.c_s: 5 must equal"),
        (["model.generator.c_cond=3"], "model.generator.c_cond: 3 must equal"),
        (["model.trunk.n_heads=5"], "model.trunk.n_heads: 5 must divide"),
        (["model.generator.n_steps=0"], "model.generator.n_steps: 0 must be at least 1"),
        (["model.heads.n_torsions=3", "model.merger.single_in=70"], "model.heads.n_torsions: 3 must be 2"),
        (["model.generator.prior=blob"], "model.generator.prior: 'blob' is not one of"),
        (["model.trunk.pair_chunk_size=0"], "model.trunk.pair_chunk_size: 0 must be null or at least 1"),
        (["model.heads.distogram_bins=1"], "model.heads: distogram needs at least 2 bins"),
        (
            ["lora=default", "model.init_from=pyproject.toml", "lora.target_modules=[qq_proj]"],
            "lora.target_modules: ['qq_proj'] not in the model",
        ),
        (
            ["lora=default", "model.init_from=pyproject.toml", "lora.trainable=[decoder]"],
            "lora.trainable: ['decoder'] are not model stages",
        ),
        (["lora=default", "model.init_from=pyproject.toml", "lora.r=0"], "lora.r: must be >= 1"),
        (["data=rna3d", "data.dir=/nonexistent/rna"], "data.dir: no such directory: /nonexistent/rna"),
        (["data.split=split_file"], "data.split_file: no such file"),
        (["data.split=temporal"], "data.temporal_cutoff: a YYYY-MM-DD date is required"),
        (["data.fraction=0"], "data.fraction: must be in (0, 1]"),
        (["data.val_fraction=1.0"], "data.val_fraction: must be in [0, 1)"),
        (["data.min_length=500"], "data.min_length: 500 exceeds data.max_length"),
        (["data.batch_size=0"], "data.batch_size: must be >= 1"),
        (["model.init_from=/nonexistent.ckpt"], "model.init_from: no such checkpoint"),
        (["trainer.accelerator=tpu"], "trainer.accelerator: 'tpu' not in"),
        (["trainer.devices=0"], "trainer.devices / trainer.num_nodes: must be >= 1"),
        (["trainer.max_epochs=0"], "trainer.max_epochs: set max_epochs, max_steps or max_time"),
        (["trainer.precision=16-mixed"], "trainer.precision: 16-mixed needs a GPU (Lightning has no fp16 AMP on CPU)"),
        (["trainer.precision=fp8"], "trainer.precision: 'fp8' not in"),
        (["ddp.timeout_min=0"], "ddp.timeout_min: must be positive"),
        (["ddp.bucket_cap_mb=0"], "ddp.bucket_cap_mb: must be >= 1"),
        (["+ddp.nccl_env.OMP_NUM_THREADS=4"], "ddp.nccl_env.OMP_NUM_THREADS: not an NCCL variable"),
        (["ddp.nccl_env.NCCL_DEBUG=LOUD"], "ddp.nccl_env.NCCL_DEBUG: 'LOUD' not in"),
        (["ddp.nccl_env.TORCH_NCCL_ASYNC_ERROR_HANDLING=7"], "TORCH_NCCL_ASYNC_ERROR_HANDLING: '7' must be 0, 1, 2"),
        (["trainer.max_time=30"], "trainer.max_time: '30' is not a wall-clock budget DD:HH:MM:SS"),
        (["trainer.max_time=1h"], "trainer.max_time: '1h' is not a wall-clock budget"),
        (["trainer.max_time=00:00:00:00"], "trainer.max_time: '00:00:00:00' must be a positive duration"),
        (["resume=sometimes"], "resume: 'sometimes' not in"),
        (["objective=val/acc"], "objective: 'val/acc' is never logged"),
        (["checkpoint.mode=up"], "checkpoint.mode: must be min or max"),
        (["checkpoint.monitor=val/f1"], "checkpoint.monitor: 'val/f1' is never logged"),
        (["lr=0"], "lr: must be positive"),
        (["optim.ema_decay=1.0"], "optim.ema_decay: must be in [0, 1) (0: off), is 1.0"),
        (["trainer.devices=2"], "use launcher=local (submitit, this machine) or launcher=slurm"),
        (["experiment=lora_finetune"], "model.init_from: LoRA fine-tuning needs a pretrained base checkpoint"),
        (["model.init_from=???"], "model.init_from: missing value"),
    ],
)
def test_each_rule_names_the_key(overrides: list[str], message: str) -> None:
    cfg = compose_train(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_all_problems_are_collected_at_once() -> None:
    cfg = compose_train(["model.heads.c_z=7", "lr=0", "resume=maybe"])
    problems = collect_problems(cfg)
    assert len(problems) == 3, problems


def test_unknown_key_is_rejected_at_composition() -> None:
    with pytest.raises(Exception, match="trunk.c_ss|Key 'c_ss' not in"):
        compose_train(["model.trunk.c_ss=3"])


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_composing_and_cfg_job_import_neither_torch_nor_lightning() -> None:
    code = (
        "import sys, atexit\n"
        "heavy = lambda: ','.join(m for m in ('torch', 'pytorch_lightning') if m in sys.modules)\n"
        "atexit.register(lambda: print('HEAVY=' + heavy()))\n"
        "sys.argv = ['train', '--cfg', 'job', 'model=base']\n"
        "from rna_hpc.train import main\n"
        "main()\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout, proc.stdout[-500:]
    assert "c_s:" in proc.stdout


def test_cli_prints_config_errors_as_one_message_with_exit_code_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rna_hpc.train", "model.heads.c_z=7", "lr=0"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: invalid configuration (2 problems):")
    assert "model.heads.c_z" in proc.stderr and "lr: must be positive" in proc.stderr


def test_every_enum_value_the_reference_prints_is_the_value_a_user_types() -> None:
    """OmegaConf matches enum members by name, docs/configuration.md prints their values: the two must agree."""
    import enum

    from rna_hpc.config import schema

    enums = [v for v in vars(schema).values() if isinstance(v, enum.EnumType) and v.__module__ == schema.__name__]
    assert len(enums) >= 4
    overrides = {schema.OnError: "data.on_error", schema.UnknownNucleotide: "data.unknown_nucleotide"}
    for kind in enums:
        for member in kind:
            assert member.name == member.value, f"{kind.__name__}.{member.name} prints as {member.value!r}"
            if kind in overrides:
                cfg = compose_train([f"{overrides[kind]}={member.value}"])
                assert OmegaConf.select(cfg, overrides[kind]) is member


def test_slurm_jobs_save_periodic_checkpoints_by_default() -> None:
    """A node failure gives no warning: without periodic checkpoints a Slurm job loses work back to its last epoch."""
    assert compose_train([]).checkpoint.every_minutes == 0
    assert compose_train(["launcher=slurm"]).checkpoint.every_minutes == 15
    assert compose_train(["launcher=slurm", "checkpoint.every_minutes=0"]).checkpoint.every_minutes == 0
    assert (
        compose_train(
            ["experiment=full_production", *COMPANIONS[("experiment", "full_production")]]
        ).checkpoint.every_minutes
        == 20
    )


def _predict_problems(overrides: list[str]) -> list[str]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=["ckpt=absent.ckpt", "input=absent.csv", *overrides])
    return collect_problems(cfg, "predict")


def test_fold_and_template_search_options_are_validated() -> None:
    defaults = _predict_problems(["candidates=[model,fold,ss_model]", "template_search=structure"])
    assert not [p for p in defaults if p.startswith(("fold", "template_search", "candidates"))]
    bad = ["template_search=blast", "fold.steps=0", "fold.lr=0", "fold.window=-1", "fold.clash_weight=-1"]
    problems = _predict_problems(bad)
    for message in (
        "template_search: 'blast' is not one of sequence, structure",
        "fold.steps: must be >= 1, is 0",
        "fold.lr: must be positive, is 0.0",
        "fold.window: must be positive, is -1.0",
        "fold.clash_weight: must be >= 0, is -1.0",
    ):
        assert message in problems, problems
    with pytest.raises(Exception, match="fold.stepz"):
        _predict_problems(["fold.stepz=3"])  # the schema rejects unknown keys
