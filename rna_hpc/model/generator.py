"""Stage D: an EDM-style diffusion denoiser over C1' coordinates, predicting a residual around a prior structure.

Preconditioning follows Karras et al. (2022) in the residual space u = x - prior, with one change: the skip
connection is scaled by a learned gate that starts at 0 (and the output layer starts at 0). An untrained
denoiser therefore returns the prior itself, and sampling from it reproduces the prior; training opens the
gate as far as it helps. ``c_out`` and the loss weight follow the effective skip so that the network's target
keeps unit variance at every noise level (for gate = 1 they are exactly EDM's).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rna_hpc.config.schema import GeneratorConfig
from rna_hpc.model.coords import masked_centroid, pair_distances, random_rotations, superpose
from rna_hpc.model.layers import AttentionWithPairBias, FourierEmbedding, Transition, radial_basis, zero_init

N_RBF = 16  # radial basis functions of the noisy distances
RBF_MAX = 30.0  # A
TRANSLATION_STD = 1.0  # A, training augmentation


class DenoiserBlock(nn.Module):
    def __init__(self, c_a: int, c_z: int, n_heads: int) -> None:
        super().__init__()
        self.attn = AttentionWithPairBias(c_a, c_z, n_heads)
        self.transition = Transition(c_a)

    def forward(self, a: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        a = a + self.attn(a, z, mask)
        return a + self.transition(a)


class Denoiser(nn.Module):
    """D(x; sigma) = prior + gate * c_skip * (x - prior) + c_out * F(c_in * (x - prior), sigma, cond)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c_a, c_z = cfg.c_a, cfg.c_z
        self.noise_embed = FourierEmbedding(c_a)
        self.noise_proj = nn.Linear(c_a, c_a)
        self.single_in = nn.Sequential(nn.LayerNorm(cfg.c_cond), nn.Linear(cfg.c_cond, c_a))
        self.coord_in = nn.Linear(3, c_a)
        self.pair_in = nn.Sequential(nn.LayerNorm(c_z), nn.Linear(c_z, c_z))
        self.dist_in = nn.Linear(N_RBF, c_z)
        self.blocks = nn.ModuleList(DenoiserBlock(c_a, c_z, cfg.n_heads) for _ in range(cfg.n_blocks))
        self.out_norm = nn.LayerNorm(c_a)
        self.out = zero_init(nn.Linear(c_a, 3))
        self.skip_gate = nn.Parameter(torch.zeros(()))

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """c_skip (gated), c_out and c_in for noise levels sigma [B]; c_out carries no gradient."""
        sd2, s2 = self.cfg.sigma_data**2, sigma**2
        c_skip = self.skip_gate * sd2 / (s2 + sd2)
        k = c_skip.detach()
        c_out = torch.sqrt((1 - k) ** 2 * sd2 + k**2 * s2)
        return c_skip, c_out, torch.rsqrt(s2 + sd2)

    def condition(self, cond: dict[str, Tensor]) -> dict[str, Tensor]:
        """The part of the inputs that does not depend on x or sigma (computed once per sampling run)."""
        if "a" in cond:
            return cond
        return {"a": self.single_in(cond["single"]), "z": self.pair_in(cond["pair"])}

    def forward(self, x: Tensor, sigma: Tensor, prior: Tensor, cond: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Denoised coordinates [B,L,3] of noisy x [B,L,3] at noise levels sigma [B]; ``cond`` raw or `condition`ed."""
        c_skip, c_out, c_in = self.scalings(sigma)
        u = x - prior
        c_noise = torch.log(sigma / self.cfg.sigma_data) / 4
        pre = self.condition(cond)
        a = pre["a"] + self.coord_in(c_in[:, None, None] * u)
        a = a + self.noise_proj(self.noise_embed(c_noise)).unsqueeze(1)
        z = pre["z"] + self.dist_in(radial_basis(pair_distances(x), RBF_MAX, N_RBF))
        for block in self.blocks:
            a = block(a, z, mask)
        f = self.out(self.out_norm(a))
        denoised = prior + c_skip[:, None, None] * u + c_out[:, None, None] * f
        return torch.where(mask.unsqueeze(-1), denoised, prior)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """EDM weight 1/c_out^2 per noise level (of the gated preconditioning)."""
        return self.scalings(sigma)[1].pow(-2)

    def training_example(
        self, coords: Tensor, coord_mask: Tensor, prior: Tensor, mask: Tensor, has_prior: bool, generator=None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Noisy input, sigma [B], clean target and prior, all in one randomly moved frame.

        The truth is first superposed on the prior (or centred when there is none), so the residual is the
        smallest rigid-invariant one; missing residues take the prior's position (their loss is masked).
        """
        b, dev, dt = coords.shape[0], coords.device, coords.dtype
        y = superpose(coords, prior, coord_mask) if has_prior else coords - masked_centroid(coords, coord_mask)
        y = torch.where(coord_mask.unsqueeze(-1), y, prior)
        if self.cfg.augment:
            centre = masked_centroid(prior, mask)
            rot = random_rotations(b, generator=generator, device=dev, dtype=dt)
            shift = TRANSLATION_STD * torch.randn(b, 1, 3, generator=generator, device=dev, dtype=dt)
            y = (y - centre) @ rot + centre + shift
            prior = (prior - centre) @ rot + centre + shift
        n = torch.randn(b, generator=generator, device=dev, dtype=dt)
        sigma = self.cfg.sigma_data * torch.exp(self.cfg.p_mean + self.cfg.p_std * n)
        noisy = y + sigma[:, None, None] * torch.randn(y.shape, generator=generator, device=dev, dtype=dt)
        return noisy, sigma, y, prior

    def noise_levels(self, n_steps: int, device=None) -> Tensor:
        """Karras schedule: n_steps levels from sigma_max down to sigma_min, then 0 -> [n_steps + 1]."""
        c = self.cfg
        if n_steps == 1:
            levels = torch.tensor([c.sigma_max], dtype=torch.float64)
        else:
            t = torch.linspace(0, 1, n_steps, dtype=torch.float64)
            lo, hi = c.sigma_min ** (1 / c.rho), c.sigma_max ** (1 / c.rho)
            levels = (hi + t * (lo - hi)) ** c.rho
        return torch.cat([levels, levels.new_zeros(1)]).to(device=device, dtype=torch.get_default_dtype())

    @torch.no_grad()
    def sample(
        self, cond: dict[str, Tensor], prior: Tensor, mask: Tensor, n_samples: int, n_steps: int, generator=None
    ) -> Tensor:
        """Euler integration of the probability-flow ODE from prior + sigma_max noise -> [B,S,L,3]."""
        b, n, _ = prior.shape
        cond = {k: v.repeat_interleave(n_samples, dim=0) for k, v in self.condition(cond).items()}
        prior, mask = prior.repeat_interleave(n_samples, dim=0), mask.repeat_interleave(n_samples, dim=0)
        return self.integrate(cond, prior, mask, n_steps, generator).view(b, n_samples, n, 3)

    def integrate(self, cond: dict[str, Tensor], prior: Tensor, mask: Tensor, n_steps: int, generator=None) -> Tensor:
        """[B,L,3]: Euler steps of the probability-flow ODE from prior + sigma_max noise (gradients flow when enabled,
        as in training's rollout loss)."""
        levels = self.noise_levels(n_steps, prior.device)
        # drawn where the generator lives: a CPU generator gives the same start on CPU and GPU (same seed, same fold)
        where = generator.device if generator is not None else prior.device
        noise = torch.randn(prior.shape, generator=generator, device=where, dtype=prior.dtype).to(prior.device)
        x = prior + levels[0] * noise
        cond = self.condition(cond)
        for i in range(n_steps):
            sigma = levels[i].expand(prior.shape[0]).to(prior.dtype)
            denoised = self(x, sigma, prior, cond, mask)
            x = denoised if levels[i + 1] == 0 else x + (levels[i + 1] - levels[i]) * (x - denoised) / levels[i]
        return x
