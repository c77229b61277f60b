"""``RNADataModule``: built by ``hydra.utils.instantiate(cfg.data, seed=cfg.seed)``.

``prepare_data`` (local rank 0) builds the feature cache; ``setup`` (every rank) loads it. Both loaders use the
``LengthBucketSampler`` with the trainer's rank and world size, so Lightning must not inject its own distributed
sampler (``Trainer(use_distributed_sampler=False)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader

from rna_hpc.config.schema import DataConfig, FeaturizerConfig, SyntheticConfig
from rna_hpc.data.dataset import RNADataset, collate, make_item
from rna_hpc.data.fasta import check_predict_length
from rna_hpc.data.features import featurize_all
from rna_hpc.data.prepare import PreparedData, load_or_build, prepare
from rna_hpc.data.sampler import LengthBucketSampler
from rna_hpc.data.splits import subsample
from rna_hpc.data.targets import normalize_sequence
from rna_hpc.errors import ConfigError

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


class RNADataModule(pl.LightningDataModule):
    """Train/val loaders over the prepared (cached) data; ``predict_samples`` featurizes new sequences."""

    def __init__(self, seed: int = 0, featurizer: Any = None, synthetic: Any = None, **fields: Any) -> None:
        super().__init__()
        self.cfg = data_config(featurizer, synthetic, **fields)
        self.seed = int(seed)
        self.data: PreparedData | None = None

    def prepare_data(self) -> None:
        load_or_build(self.cfg)

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = prepare(self.cfg, self.seed)
            rank_zero_info(self.data.report.format())

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (int(trainer.world_size), int(trainer.global_rank)) if trainer is not None else (1, 0)

    def _prepared(self) -> PreparedData:
        if self.data is None:
            self.setup()
        assert self.data is not None
        return self.data

    def _loader(self, dataset: RNADataset, batch_size: int, shuffle: bool) -> DataLoader:
        world, rank = self._world()
        sampler = LengthBucketSampler(
            dataset.lengths,
            batch_size,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            bucket_by_length=bool(self.cfg.bucket_by_length),
        )
        workers = int(self.cfg.num_workers)
        return DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers, persistent_workers=workers > 0
        )

    def train_samples(self) -> list[dict[str, Any]]:
        """The training targets, subsampled to ``data.fraction`` (deterministic in the seed)."""
        return subsample(self._prepared().train, float(self.cfg.fraction), self.seed)

    def train_dataloader(self) -> DataLoader:
        dataset = RNADataset(self.train_samples(), True, self.cfg.max_length)
        return self._loader(dataset, int(self.cfg.batch_size), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        dataset = RNADataset(self._prepared().val, False, self.cfg.max_length, self.cfg.val_max_length)
        return self._loader(dataset, int(self.cfg.val_batch_size), shuffle=False)

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
