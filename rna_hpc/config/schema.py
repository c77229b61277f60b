"""Dataclass schemas for every config group, stored in Hydra's ConfigStore as ``base_*``.

The YAML files under ``conf/`` name these schemas in their defaults lists (``defaults: [base_model, _self_]``),
so a typo or a wrong type fails at composition with a one-line error. This module holds no logic and
imports neither torch nor Lightning: composing a config must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class DataFormat(StrEnum):
    """Where targets come from."""

    synthetic = "synthetic"  # generated on first use from a seed (smoke data)
    kaggle = "kaggle"  # {train,val}_{sequences,labels}.csv, the 'Stanford RNA 3D Folding' layout
    structures = "structures"  # a directory of PDB / mmCIF files


# Per-target problems: raise the first, or skip the target and report it. Built with the functional API because a
# member must be named `raise` (a keyword): OmegaConf matches enum members by name, so the name is what users type.
OnError = StrEnum("OnError", [("raise", "raise"), ("skip", "skip")], module=__name__)


class UnknownNucleotide(StrEnum):
    mask = "mask"  # keep the residue as N (embedded as unknown, masked out of pair features; noted in the report)
    reject = "reject"  # drop the target (or raise, see on_error)


class SplitPolicy(StrEnum):
    files = "files"  # train_* / val_* files of the Kaggle layout
    seed = "seed"  # random split by data.split_seed and data.val_fraction
    temporal = "temporal"  # targets after data.temporal_cutoff go to validation
    split_file = "split_file"  # a text file: one '<target_id> <train|val>' per line


@dataclass
class FeaturizerConfig:
    """Stage A: secondary-structure pair features from ViennaRNA (always computed on CPU workers)."""

    name: str = "vienna_bpp"
    version: int = 1
    temperature: float = 37.0
    use_bpp: bool = True  # base-pair probabilities (partition function); False: MFE pairs only
    max_bp_span: int = -1  # -1: no limit
    workers: int = 0  # 0: one per CPU core


@dataclass
class SyntheticConfig:
    """The embedded smoke dataset: sequences, ViennaRNA structure, ideal A-form stems and arc loops."""

    n_targets: int = 48
    min_length: int = 24
    max_length: int = 64
    seed: int = 0


@dataclass
class DataConfig:
    _target_: str = "rna_hpc.data.datamodule.RNADataModule"
    format: DataFormat = DataFormat.synthetic
    dir: str | None = None  # input folder (kaggle CSVs or structure files)
    cache_dir: str = "${paths.cache_dir}"
    stage_to_local: bool = False  # copy the cache to node-local disk ($SLURM_TMPDIR) at job start
    split: SplitPolicy = SplitPolicy.seed
    split_seed: int = "${seed}"  # type: ignore[assignment]
    val_fraction: float = 0.15
    split_file: str | None = None
    temporal_cutoff: str | None = None  # YYYY-MM-DD
    fraction: float = 1.0  # use this fraction of the training targets (a cheap HPO budget)
    min_length: int = 10
    max_length: int = 128  # training crop length
    val_max_length: int = 512  # whole chains in validation up to this length
    max_predict_length: int = 1024
    crop_long_predict: bool = False  # False: a too-long predict target is an error naming the limit
    batch_size: int = 4
    val_batch_size: int = 4
    num_workers: int | None = None  # None: cpus_per_task - 1 under Slurm (the main process keeps one), else 0
    pin_memory: bool | None = None  # None: on when the trainer runs on a GPU
    bucket_by_length: bool = True
    on_error: OnError = OnError.skip  # per-target problems; whole-file structural problems always raise
    unknown_nucleotide: UnknownNucleotide = UnknownNucleotide.mask
    max_missing_fraction: float = 0.5
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TrunkConfig:
    """Stage B: single (L x c_s) and pair (L x L x c_z) representations."""

    c_s: int = 64
    c_z: int = 32
    n_blocks: int = 4
    n_heads: int = 4
    relpos_max: int = 32
    pair_feat_dim: int = 2  # Stage A channels: base-pair probability, MFE-paired indicator
    triangle_updates: bool = False
    activation_checkpointing: bool = False
    pair_chunk_size: int | None = None  # chunk pair transitions over rows to bound memory
    dropout: float = 0.0


@dataclass
class HeadsConfig:
    """Torsion head (virtual C1' angle and dihedral as sin/cos) and distogram head."""

    c_s: int = "${..trunk.c_s}"  # type: ignore[assignment]
    c_z: int = "${..trunk.c_z}"  # type: ignore[assignment]
    n_torsions: int = 2
    distogram_bins: int = 38
    distogram_min: float = 2.0
    distogram_max: float = 40.0


@dataclass
class MergerConfig:
    """Merges trunk single/pair, torsion features and Stage A features into Stage D's conditioning."""

    single_in: int = 68  # must equal trunk.c_s + 2 * heads.n_torsions
    c_z: int = "${..trunk.c_z}"  # type: ignore[assignment]
    c_cond: int = 64


@dataclass
class GeneratorConfig:
    """Stage D: a small diffusion denoiser over C1' coordinates."""

    c_cond: int = "${..merger.c_cond}"  # type: ignore[assignment]
    c_z: int = "${..trunk.c_z}"  # type: ignore[assignment]
    c_a: int = 64
    n_blocks: int = 2
    n_heads: int = 4
    sigma_data: float = 16.0
    p_mean: float = -1.2
    p_std: float = 1.5
    n_steps: int = 20  # sampling steps
    n_samples: int = 5  # samples per target at predict time
    augment: bool = True  # random rotation/translation of the target in training
    sigma_max: float = 160.0  # sampling noise schedule (Karras et al.): largest noise level, in A
    sigma_min: float = 0.01  # smallest noise level before the final denoising step, in A
    rho: float = 7.0  # schedule curvature
    prior: str = "ss_model"  # ss_model | aform | none: the structure Stage D refines when a batch has no prior_coords


@dataclass
class ModelConfig:
    _target_: str = "rna_hpc.model.network.RNA3DNet"
    _convert_: str = "object"
    name: str = "tiny"
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    merger: MergerConfig = field(default_factory=MergerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    init_from: str | None = None  # a full base checkpoint loaded before LoRA adapters are injected


@dataclass
class LoraConfig:
    """peft LoRA on the trunk's attention projections; the rest listed in `trainable` stays trainable."""

    enabled: bool = False
    r: int = 4
    alpha: int = 8
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"])
    trainable: list[str] = field(default_factory=lambda: ["merger", "heads", "generator"])


@dataclass
class TrainerConfig:
    """Keyword arguments of ``pytorch_lightning.Trainer`` that rna_hpc supports."""

    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # rna_hpc picks DDP (gloo on CPU, nccl on GPU) when world size > 1
    max_epochs: int = 10
    max_steps: int = -1
    max_time: str | None = None  # wall-clock budget "DD:HH:MM:SS" (Lightning's Timer; counts across resumes)
    precision: str = "32-true"
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    deterministic: bool = False  # conf/train.yaml: follows the top-level `deterministic`
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    val_check_interval: float | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    num_sanity_val_steps: int = 0
    detect_anomaly: bool = False
    profiler: str | None = None
    overfit_batches: float = 0.0
    enable_progress_bar: bool = True


@dataclass
class DDPConfig:
    """Multi-process settings: NCCL on a GPU accelerator, gloo on CPU (picked by rna_hpc, not set here)."""

    timeout_min: float = 30.0  # a collective waiting longer than this fails the job instead of hanging
    find_unused_parameters: bool = False  # True only for a model whose forward skips parameters
    bucket_cap_mb: int = 25  # gradient bucket size of DistributedDataParallel
    # exported before the process group starts, NCCL backend only (TORCH_NCCL_* / NCCL_* variables)
    nccl_env: dict[str, str] = field(
        default_factory=lambda: {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_DEBUG": "WARN"}
    )


@dataclass
class OptimConfig:
    optimizer: Any = field(
        default_factory=lambda: {
            "_target_": "torch.optim.AdamW",
            "_partial_": True,
            "lr": "${lr}",
            "weight_decay": 0.01,
        }
    )
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine decay to this fraction of lr
    ema_decay: float = 0.0  # 0: off; else validation, checkpoints and sampling use this moving average of the weights


@dataclass
class LossConfig:
    diffusion: float = 1.0  # EDM-weighted denoising loss on aligned C1' coordinates
    distogram: float = 0.3
    torsion: float = 0.5
    lddt: float = 0.5  # smooth lDDT of the denoised coordinates
    rollout: float = 0.0  # 1 - TM-score of a structure the sampler rolls out from the prior (gradients through it)
    fape: float = 0.0  # FAPE of that rolled-out structure, a frame at each residue (errors clamped at 30 A, unit 10 A)
    rollout_steps: int = 3  # denoising steps of the rollout (from sigma_max, as sampling)


@dataclass
class LoggerConfig:
    """Loggers; only rank 0 logs. Each entry is a Lightning logger built with instantiate."""

    csv: Any = field(default_factory=lambda: {"enabled": True})
    tensorboard: Any = field(default_factory=lambda: {"enabled": False})
    mlflow: Any = field(default_factory=lambda: {"enabled": False})
    wandb: Any = field(default_factory=lambda: {"enabled": False})
    lancedb: Any = field(default_factory=lambda: {"enabled": False})


@dataclass
class PathsConfig:
    root_dir: str = "."
    data_dir: str = "${oc.env:RNA_HPC_DATA,../shared/data/rna3d}"
    scratch_dir: str = "outputs/scratch"  # per-job run dirs (fast, may be purged)
    shared_dir: str = "outputs/shared"  # consolidated, verified results
    cache_dir: str = "${paths.shared_dir}/cache"
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class CheckpointConfig:
    monitor: str = "val/tm"  # checkpoints are selected by validation TM-score
    mode: str = "max"
    every_n_steps: int = 0  # 0: off; periodic checkpoints for preemption
    every_minutes: float = 0.0  # 0: off; launcher=slurm sets 15 (a node failure gives no warning)
    save_top_k: int = 1
    keep_steps: int = 2  # periodic step-<N>.ckpt files kept on scratch (last.ckpt is kept too)


@dataclass
class ConsolidateConfig:
    enabled: bool = True
    every_checkpoint: bool = True
    umask: int = 0o022
    # run-dir files copied to shared storage (globs relative to the run dir); manifest.json is written last
    # what is copied to shared storage: checkpoints, metrics, Hydra's config snapshot + overrides, the job log
    include: list[str] = field(
        default_factory=lambda: [
            "ckpt/*.ckpt",
            "ckpt/*.ckpt.sha256",
            "**/metrics.csv",
            ".hydra/config.yaml",
            ".hydra/overrides.yaml",
            "*.log",
        ]
    )


@dataclass
class TrialConfig:
    """Set by the sweeper on each HPO trial job; empty for ordinary runs."""

    study_name: str | None = None
    storage: str | None = None
    number: int | None = None
    stage: int | None = None


@dataclass
class TrainConfig:
    """Primary schema of ``conf/train.yaml``."""

    task_name: str = "train"
    experiment_name: str = "default"
    seed: int = 42
    lr: float = 1e-3
    objective: Any = "val/tm"  # the metric the task returns to a sweeper; a list of names: one value each
    fail_below_baseline: bool = False  # a run whose best val TM is below the A-form helix is a failure
    resume: str = "auto"  # auto | never | ignore_config_change
    deterministic: bool = False  # deterministic algorithms, seeded workers, cuBLAS workspace (docs/lineage.md)
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    lora: LoraConfig = MISSING
    trainer: TrainerConfig = MISSING
    ddp: DDPConfig = field(default_factory=DDPConfig)
    optim: OptimConfig = MISSING
    loss: LossConfig = MISSING
    logger: LoggerConfig = MISSING
    paths: PathsConfig = MISSING
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    consolidate: ConsolidateConfig = field(default_factory=ConsolidateConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    hpo: Any = None
    pipeline: Any = None  # settings of the DVC pipeline (conf/pipeline.yaml); training ignores them


@dataclass
class FoldConfig:
    """The ``fold`` candidates: the prior refolded against the distogram's expected distances (restraint_fold)."""

    steps: int = 300  # Adam steps on the C1' coordinates
    lr: float = 1.0  # Adam step size, in A
    window: float = 2.0  # a pair's confidence: distogram probability within this many A of its expected distance
    bond_length: float = 5.9  # consecutive C1'-C1' distance, in A
    bond_weight: float = 1.0
    clash_weight: float = 1.0  # non-neighbour C1' atoms closer than 3.8 A
    prior_weight: float = 1.0  # weight of the prior's distances (1: a pair aims at w * predicted + (1 - w) * prior)


@dataclass
class PredictConfig:
    """Primary schema of ``conf/predict.yaml``."""

    ckpt: str = MISSING  # a checkpoint written by rna_hpc.train (full or LoRA)
    input: str = MISSING  # FASTA or a sequences CSV (target_id,sequence)
    out_dir: str = "${hydra:runtime.output_dir}"
    n_predictions: int = 5  # structures per target in the submission (the Kaggle layout expects 5)
    candidates: list[str] = field(default_factory=lambda: ["model", "ss_model"])  # ranked together by confidence
    templates_dir: str | None = None  # a Kaggle folder whose train split adds template candidates
    ss_ensemble: str = "tilt"  # ss variants after the MFE one: tilt (tilted loops) | boltzmann (sampled pairings)
    template_search: str = "structure"  # structure (identity + agreement of predicted pairs) | sequence (alignment)
    fold: FoldConfig = field(default_factory=FoldConfig)  # settings of the fold candidates
    batch_size: int = 4
    seed: int = 0
    shards: int = 1  # jobs the prediction is split over (with -m: one array of `shards` jobs, merged at the end)
    shard: int = 0  # which of them this job is (set by the sweep: hydra.sweeper.params in conf/predict.yaml)
    results_dir: str = "${hydra:sweep.dir}/results"  # where the shards' PDB files and merged submission go
    experiment_name: str = "default"  # the experiment whose runs.jsonl gets the prediction's line
    runs_log: str | None = "${paths.shared_dir}/${experiment_name}/runs.jsonl"  # one line per prediction; null: none
    data: DataConfig = MISSING
    trainer: TrainerConfig = MISSING  # accelerator (cpu, gpu) and devices (1: one device per prediction job)
    paths: PathsConfig = MISSING


def register_configs() -> None:
    """Store every schema under its ``base_*`` name (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="base_train", node=TrainConfig)
    cs.store(name="base_predict", node=PredictConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="lora", name="base_lora", node=LoraConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="optim", name="base_optim", node=OptimConfig)
    cs.store(group="loss", name="base_loss", node=LossConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="paths", name="base_paths", node=PathsConfig)


register_configs()
