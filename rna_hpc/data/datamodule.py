"""``RNADataModule``: built by ``hydra.utils.instantiate(cfg.data, seed=cfg.seed)``.

``prepare_data`` (local rank 0) builds the feature cache; ``setup`` (every rank) loads it. Both loaders use the
``LengthBucketSampler`` with the trainer's rank and world size, so Lightning must not inject its own distributed
sampler (``Trainer(use_distributed_sampler=False)``). The training loader is a ``ResumableDataLoader``: its position
in the epoch is saved in checkpoints (``state_dict``), and a run resumed mid-epoch goes on with the next batch. The
datamodule carries that position too, because Lightning hands a saved position to the loader only when it builds
the loader after restoring, not when ``configure_optimizers`` asks for ``estimated_stepping_batches`` first. Neither
loader draws from the global torch RNG.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader

from rna_hpc.config.schema import DataConfig, FeaturizerConfig, SyntheticConfig
from rna_hpc.data.dataset import RNADataset, collate, make_item
from rna_hpc.data.fasta import check_predict_length
from rna_hpc.data.features import featurize_all
from rna_hpc.data.prepare import PreparedData, load_or_build, prepare
from rna_hpc.data.sampler import LengthBucketSampler, ResumableDataLoader, training_position
from rna_hpc.data.splits import subsample
from rna_hpc.data.targets import normalize_sequence
from rna_hpc.errors import ConfigError
from rna_hpc.launch.env import JobContext

_FIELDS = {f.name for f in dataclasses.fields(DataConfig)} - {"_target_", "featurizer", "synthetic"}


def _plain(node: Any) -> dict[str, Any]:
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dataclasses.asdict(node) if dataclasses.is_dataclass(node) else dict(node)


def data_config(featurizer: Any = None, synthetic: Any = None, **fields: Any) -> DataConfig:
    """A DataConfig from keyword fields; unknown keys are a ConfigError that lists the valid ones."""
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise ConfigError([f"data.{k}: unknown key (valid: {', '.join(sorted(_FIELDS))})" for k in unknown])
    try:
        feat, syn = FeaturizerConfig(**_plain(featurizer)), SyntheticConfig(**_plain(synthetic))
    except TypeError as err:
        raise ConfigError(f"data.featurizer / data.synthetic: {err}") from None
    return DataConfig(featurizer=feat, synthetic=syn, **fields)


def loader_settings(
    num_workers: int | None, pin_memory: bool | None, ctx: JobContext, on_gpu: bool
) -> tuple[int, bool]:
    """``(workers, pin_memory)`` of the loaders: as configured, else ``cpus_per_task - 1`` workers under Slurm (0
    elsewhere) and pinned memory on a GPU."""
    workers = num_workers if num_workers is not None else max(0, (ctx.cpus_per_task or 1) - 1)
    return int(workers), bool(on_gpu if pin_memory is None else pin_memory)


class RNADataModule(pl.LightningDataModule):
    """Train/val loaders over the prepared (cached) data; ``predict_samples`` featurizes new sequences."""

    def __init__(self, seed: int = 0, featurizer: Any = None, synthetic: Any = None, **fields: Any) -> None:
        super().__init__()
        self.cfg = data_config(featurizer, synthetic, **fields)
        self.seed = int(seed)
        self.data: PreparedData | None = None
        self._train_loader: ResumableDataLoader | None = None
        self._resume_position: dict[str, Any] | None = None  # from a checkpoint, for the next train loader

    def prepare_data(self) -> None:
        load_or_build(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = prepare(self.cfg, self.seed)
            rank_zero_info(self.data.report.format())

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position in its epoch (saved in every checkpoint)."""
        return {"train_position": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_position = state_dict.get("train_position")

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (int(trainer.world_size), int(trainer.global_rank)) if trainer is not None else (1, 0)

    def _prepared(self) -> PreparedData:
        if self.data is None:
            self.setup()
        assert self.data is not None
        return self.data

    def _sampler(self, dataset: RNADataset, batch_size: int, shuffle: bool) -> LengthBucketSampler:
        world, rank = self._world()
        return LengthBucketSampler(
            dataset.lengths,
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            bucket_by_length=bool(self.cfg.bucket_by_length),
        )

    def _loader_kwargs(self) -> dict[str, Any]:
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        workers, pin = loader_settings(self.cfg.num_workers, self.cfg.pin_memory, JobContext.from_env(), on_gpu)
        return {"collate_fn": collate, "num_workers": workers, "persistent_workers": workers > 0, "pin_memory": pin}

    def _train_progress(self) -> tuple[int, float]:
        """(batches of this epoch done, batches per epoch, ``limit_train_batches`` included) as the trainer counts."""
        trainer = self.trainer
        if trainer is None:
            return 0, float("inf")
        return training_position(trainer)[0], trainer.num_training_batches

    def train_samples(self) -> list[dict[str, Any]]:
        """The training targets, subsampled to ``data.fraction`` (deterministic in the seed)."""
        return subsample(self._prepared().train, float(self.cfg.fraction), self.seed)

    def train_dataloader(self) -> ResumableDataLoader:
        dataset = RNADataset(self.train_samples(), True, self.cfg.max_length)
        sampler = self._sampler(dataset, int(self.cfg.batch_size), shuffle=True)
        loader = ResumableDataLoader(dataset, sampler, progress=self._train_progress, **self._loader_kwargs())
        if self._resume_position is not None:
            loader.load_state_dict(self._resume_position)
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> DataLoader:
        dataset = RNADataset(self._prepared().val, False, self.cfg.max_length, self.cfg.val_max_length)
        sampler = self._sampler(dataset, int(self.cfg.val_batch_size), shuffle=False)
        generator = torch.Generator().manual_seed(self.seed)  # worker seeds without drawing from the global RNG
        return DataLoader(dataset, batch_sampler=sampler, generator=generator, **self._loader_kwargs())

    def predict_samples(self, sequences: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Unpadded items (no coordinates) for (target_id, sequence) pairs; ``collate`` batches them."""
        names, seqs = [], []
        for tid, raw in sequences:
            seq = normalize_sequence(raw, self.cfg.unknown_nucleotide, f"predict input {tid}")
            names.append(tid)
            seqs.append(check_predict_length(seq, self.cfg.max_predict_length, self.cfg.crop_long_predict, tid))
        feats = featurize_all(seqs, self.cfg.featurizer)
        rows = zip(names, seqs, feats, strict=True)
        return [make_item({"target_id": t, "sequence": s, "pair_feats": f}) for t, s, f in rows]
