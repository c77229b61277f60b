"""RNA3DModule: the LightningModule that trains, validates (TM-score of samples) and checkpoints RNA3DNet."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor

from rna_hpc.checkpoint.model_state import frozen_fingerprint, lora_checkpoint_info, restore_weights
from rna_hpc.checkpoint.partial_load import load_checkpoint_file, partial_load
from rna_hpc.errors import CheckpointError, ConfigError
from rna_hpc.model.lora import apply_lora, trainable_names
from rna_hpc.model.network import STAGES, build_network
from rna_hpc.model.settings import lora_config, loss_config, model_config, optim_config, plain

VAL_SEED = 1234  # validation noise and samples are seeded per batch, so val metrics are comparable across epochs
NET_PREFIX = "net."  # the module holds the network as `net`


class WarmupCosine:
    """LR multiplier per step: linear warm-up, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""

    def __init__(self, warmup_steps: int, total_steps: float, min_lr_ratio: float) -> None:
        self.warmup_steps, self.total_steps, self.min_lr_ratio = int(warmup_steps), float(total_steps), min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not math.isfinite(self.total_steps) or self.total_steps <= self.warmup_steps:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class RNA3DModule(pl.LightningModule):
    """Builds the network from ``model``, loads ``model.init_from``, injects LoRA, and trains with ``loss``/``optim``.

    Arguments are plain containers (resolved config groups), so checkpoints load with ``weights_only=True``.
    """

    def __init__(
        self,
        model: Any,
        lora: Any = None,
        loss: Any = None,
        optim: Any = None,
        objective: Any = "val/tm",
        shape: Any = None,
    ) -> None:
        super().__init__()
        self.shape_cfg = plain(shape or {})  # the other shape-defining subtrees (data.featurizer), for resume checks
        settings, lora_settings = model_config(model), lora_config(lora)  # typed once here, then passed down
        self.model_cfg, self.lora_cfg = plain(settings), plain(lora_settings)  # for hparams and checkpoints
        self.optim_settings = optim_config(optim)
        self.loss_cfg, self.optim_cfg = plain(loss or {}), plain(self.optim_settings)
        self.loss_weights = loss_config(self.loss_cfg)
        self.objective = objective
        self.save_hyperparameters(
            {"model": self.model_cfg, "lora": self.lora_cfg, "loss": self.loss_cfg, "optim": self.optim_cfg}
            | {"objective": objective, "shape": self.shape_cfg}
        )
        self.net = build_network(settings)
        if settings.init_from:
            self._load_base(settings.init_from)
        self.lora_enabled = bool(lora_settings.enabled)
        apply_lora(self.net, lora_settings)
        self.strict_loading = not self.lora_enabled  # LoRA checkpoints hold trainable weights only
        self.ema_decay = float(self.optim_settings.ema_decay)
        self._ema: dict[str, Tensor] | None = None  # moving average of the trainable weights (ema_decay > 0)
        self._raw: dict[str, Tensor] | None = None  # the trained weights while the average is swapped in

    def _load_base(self, path: str) -> None:
        """Full base weights from ``path`` into the plain network, before any adapter exists."""
        ckpt = load_checkpoint_file(path)
        if lora_checkpoint_info(ckpt).get("enabled"):
            raise CheckpointError(f"model.init_from={path}: holds LoRA weights only; give a full base checkpoint")
        if "state_dict" not in ckpt:
            raise CheckpointError(f"model.init_from={path}: no 'state_dict' in the checkpoint")
        partial_load(self, ckpt["state_dict"])

    def frozen_prefixes(self) -> list[str]:
        """State-dict prefixes whose frozen keys a LoRA checkpoint leaves out: the stages not in ``lora.trainable``."""
        trainable = set(self.lora_cfg.get("trainable") or [])
        return [f"{NET_PREFIX}{stage}." for stage in STAGES if stage not in trainable]

    # -- training ---------------------------------------------------------------------------------------------

    def forward(self, batch: dict) -> dict[str, Tensor]:
        return self.net(batch)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        parts = self.net.loss(batch, self.net(batch), self.loss_weights)
        bs = len(batch["seq"])
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            if name != "loss":
                self.log(f"train/{name}", value, batch_size=bs)
        return parts["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        gen = torch.Generator(device=self.device).manual_seed(VAL_SEED + batch_idx)
        out = self.net(batch)
        parts = self.net.loss(batch, out, self.loss_weights, generator=gen)
        bs = len(batch["seq"])
        for name, value in parts.items():
            self.log(f"val/{name}", value, batch_size=bs, sync_dist=True, prog_bar=name == "loss")
        samples = self.net.sample(batch, generator=gen, out=out)
        prior, _ = self.net.prior_for(batch)
        scores = sample_scores(samples, prior, batch["coords"], batch["coord_mask"])
        if scores:
            n = len(scores["tm"])
            for name, values in scores.items():
                self.log(f"val/{name}", float(np.mean(values)), batch_size=n, sync_dist=True, prog_bar=name == "tm")

    # -- moving average of the weights (optim.ema_decay) -------------------------------------------------------
    #
    # Validation runs on the average, and a checkpoint's `state_dict` holds it, so `val/tm`, the best checkpoint and
    # prediction from it all use the averaged weights. The trained weights go to `rna_hpc.trained` (trainable ones
    # only, so LoRA checkpoints stay adapter-sized), and a resumed fit continues from them.

    def _trainable(self) -> dict[str, Tensor]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_decay <= 0:
            return
        with torch.no_grad():
            params = self._trainable()
            if self._ema is None:
                self._ema = {n: p.detach().clone() for n, p in params.items()}
                return
            for n, p in params.items():
                self._ema[n].lerp_(p.detach(), 1.0 - self.ema_decay)

    def on_validation_start(self) -> None:
        if self._ema is None or self._raw is not None:
            return
        with torch.no_grad():
            params = self._trainable()
            self._raw = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(self._ema[n])

    def on_validation_end(self) -> None:
        if self._raw is None:
            return
        with torch.no_grad():
            for n, p in self._trainable().items():
                p.copy_(self._raw[n])
        self._raw = None

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        optim = self.optim_settings
        optimizer = make_optimizer(plain(optim.optimizer), params)
        schedule = WarmupCosine(optim.warmup_steps, self.trainer.estimated_stepping_batches, optim.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        self._attach_training_templates()
        counts = parameter_counts(self)
        rank_zero_info(
            f"parameters: {counts['trainable']:,} trainable of {counts['total']:,} total"
            + (" (LoRA)" if self.lora_enabled else "")
        )
        for logger in self.loggers:
            logger.log_metrics({f"params/{k}": float(v) for k, v in counts.items()}, step=0)

    def _attach_training_templates(self) -> None:
        """``generator.prior=template``: index the datamodule's training targets (each never its own template)."""
        if self.net.config.generator.prior != "template" or self.net.templates is not None:
            return
        from rna_hpc.model.template_prior import TemplatePrior

        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "train_samples"):
            raise ConfigError("model.generator.prior=template: training needs the RNADataModule (its train targets)")
        templates = TemplatePrior.from_samples(datamodule.train_samples())
        self.net.attach_templates(templates)
        rank_zero_info(f"template prior: {len(templates)} training chains indexed")

    # -- prediction -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict_coords(
        self, batch: dict, n_samples: int | None = None, generator=None, include_prior: bool = False
    ) -> Tensor:
        """Sampled C1' coordinates [B,S,L,3]; with ``include_prior`` the last of the S is the prior itself."""
        n = n_samples or self.net.config.generator.n_samples
        if not include_prior:
            return self.net.sample(batch, n_samples=n, generator=generator)
        prior, _ = self.net.prior_for(batch)
        samples = self.net.sample(batch, n_samples=n - 1, generator=generator) if n > 1 else prior.unsqueeze(1)[:, :0]
        return torch.cat([samples, prior.unsqueeze(1).to(samples.dtype)], dim=1)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"target_id": batch.get("target_id"), "coords": self.predict_coords(batch), "mask": batch["mask"]}

    # -- checkpoints ------------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keys = trainable_names(self)
        checkpoint["rna_hpc"] = {
            "format": 1,
            **self.shape_cfg,
            "model": self.model_cfg,
            "lora": self.lora_cfg,
            "trainable_keys": keys,
        }
        if self._ema is not None:
            state = checkpoint["state_dict"]
            trained = self._raw if self._raw is not None else state  # saved inside validation: the average is in
            checkpoint["rna_hpc"]["trained"] = {n: trained[n].detach().clone() for n in self._ema if n in state}
            for n in checkpoint["rna_hpc"]["trained"]:
                state[n] = self._ema[n].detach().clone()
        if self.lora_enabled:
            keep = set(keys)
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
            checkpoint["rna_hpc"]["frozen_sha256"] = frozen_fingerprint(self)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_weights(self, checkpoint)
        trained = (checkpoint.get("rna_hpc") or {}).get("trained")
        if trained is not None:
            if self.ema_decay > 0:
                self._ema = {n: checkpoint["state_dict"][n].detach().clone().to(self.device) for n in trained}
            checkpoint["state_dict"].update(trained)  # Lightning loads it after this hook: training goes on from it


def make_optimizer(spec: Any, params: list) -> torch.optim.Optimizer:
    """``instantiate(spec)(params)`` for a ``_partial_`` optimizer node."""
    from hydra.utils import instantiate

    try:
        factory = instantiate(spec)
        return factory(params)
    except Exception as exc:  # instantiate wraps every failure; report it as the config problem it is
        raise ConfigError(f"optim.optimizer: {str(exc).strip().splitlines()[0]}") from None


def parameter_counts(module: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def sample_scores(samples: Tensor, prior: Tensor, coords: Tensor, coord_mask: Tensor) -> dict[str, list[float]]:
    """Per target: best TM-score over samples, the RMSD of that sample, and the TM-scores of the prior and of the
    ideal A-form helix (the floor a trained model must beat)."""
    from rna_hpc.evaluation.metrics import rmsd, tm_score
    from rna_hpc.geometry import aform_helix

    out: dict[str, list[float]] = {"tm": [], "rmsd": [], "tm_prior": [], "tm_helix": []}
    samples, prior = samples.float().cpu().numpy(), prior.float().cpu().numpy()
    coords, coord_mask = coords.float().cpu().numpy(), coord_mask.cpu().numpy()
    for b in range(samples.shape[0]):
        m = coord_mask[b]
        if m.sum() < 3:
            continue
        ref = coords[b][m]
        tms = [tm_score(s[m], ref) for s in samples[b]]
        best = int(np.argmax(tms))
        out["tm"].append(tms[best])
        out["rmsd"].append(rmsd(samples[b, best][m], ref))
        out["tm_prior"].append(tm_score(prior[b][m], ref))
        last = int(np.flatnonzero(m)[-1]) + 1
        out["tm_helix"].append(tm_score(aform_helix(last)[m[:last]], ref))
    return out if out["tm"] else {}
