"""RNA3DNet: shapes from config, masking, memory options, the prior-residual generator, losses and geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from batches import make_batch, random_chain

from rna_hpc.config.schema import GeneratorConfig, HeadsConfig, MergerConfig, TrunkConfig
from rna_hpc.errors import ConfigError, InputError, TrainingFailed
from rna_hpc.geometry import aform_helix
from rna_hpc.model.coords import kabsch, random_rotations, virtual_torsions
from rna_hpc.model.losses import diffusion_loss, lddt_loss, torsion_loss
from rna_hpc.model.network import RNA3DNet, build_network
from rna_hpc.model.trunk import OuterProductUpdate

TINY = {
    "trunk": {"c_s": 32, "c_z": 16, "n_blocks": 2, "n_heads": 4},
    "merger": {"single_in": 36, "c_cond": 32},
    "generator": {"c_a": 32, "n_blocks": 1, "n_heads": 4, "n_steps": 4, "n_samples": 2},
}


def tiny_net(seed: int = 0, **trunk) -> RNA3DNet:
    torch.manual_seed(seed)
    cfg = {**TINY, "trunk": {**TINY["trunk"], **trunk}}
    return build_network(cfg)


def test_forward_shapes_follow_the_config() -> None:
    net = tiny_net()
    out = net(make_batch([12, 9]))
    assert out["single"].shape == (2, 12, 32)
    assert out["pair"].shape == (2, 12, 12, 16)
    assert out["torsion"].shape == (2, 12, 2, 2)
    assert out["distogram_logits"].shape == (2, 12, 12, 38)
    assert out["cond"]["single"].shape == (2, 12, 32) and out["cond"]["pair"].shape == (2, 12, 12, 16)


def test_dataclass_parts_with_interpolated_defaults_build() -> None:
    net = RNA3DNet(trunk=TrunkConfig(), heads=HeadsConfig(), merger=MergerConfig(), generator=GeneratorConfig())
    assert net.config.heads.c_s == 64 and net.config.generator.c_cond == 64


def test_inconsistent_or_misspelt_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model.merger.single_in: 68 must equal .* = 36"):
        build_network({"trunk": {"c_s": 32}})
    with pytest.raises(ConfigError, match="c_zz"):
        build_network({"trunk": {"c_zz": 16}})
    with pytest.raises(ConfigError, match="generator.prior"):
        build_network({"generator": {"prior": "magic"}})


def test_a_batch_without_pair_features_is_an_input_error() -> None:
    batch = make_batch([8])
    del batch["pair_feats"]
    with pytest.raises(InputError, match="pair_feats"):
        tiny_net()(batch)


def test_padding_does_not_change_the_real_residues() -> None:
    net = tiny_net(triangle_updates=True).eval()
    alone, padded = make_batch([10], seed=3), make_batch([10, 16], seed=3)
    with torch.no_grad():
        a, p = net(alone), net(padded)
    for key in ("single", "torsion"):
        torch.testing.assert_close(p[key][:1, :10], a[key], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p["distogram_logits"][:1, :10, :10], a["distogram_logits"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(p["cond"]["single"][:1, :10], a["cond"]["single"], atol=1e-5, rtol=1e-4)


def test_checkpointing_and_pair_chunking_give_the_same_values_and_gradients() -> None:
    batch = make_batch([14, 11])
    plain = tiny_net(seed=1, triangle_updates=True).train()
    lean = tiny_net(seed=1, triangle_updates=True, activation_checkpointing=True, pair_chunk_size=4).train()
    results = []
    for net in (plain, lean):
        out = net(batch)
        (out["pair"].square().mean() + out["single"].square().mean()).backward()
        results.append(
            (out["pair"].detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
        )
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-4)
    assert results[0][1].keys() == results[1][1].keys() and len(results[0][1]) > 20
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], atol=1e-5, rtol=1e-3, msg=name)


def explicit_outer_product(update: OuterProductUpdate, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lin(a_i (x) b_j) with the outer product of every pair built in full (the definition)."""
    x = update.norm(s)
    m = mask.unsqueeze(-1).to(s.dtype)
    a, b = update.a(x) * m, update.b(x) * m
    return update.out(torch.einsum("bic,bjd->bijcd", a, b).flatten(-2))


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_the_folded_outer_product_is_the_linear_map_of_the_outer_product(chunk_size: int | None) -> None:
    torch.manual_seed(0)
    update = OuterProductUpdate(c_s=12, c_z=8, chunk_size=chunk_size)
    torch.nn.init.normal_(update.out.weight)
    torch.nn.init.normal_(update.out.bias)  # both zero-free, so each term of the map is checked
    s = torch.randn(2, 11, 12, requires_grad=True)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False
    results = []
    for fn in (explicit_outer_product, lambda u, s_, m_: u(s_, m_)):
        out = fn(update, s, mask)
        grads = torch.autograd.grad(out.square().sum(), [s, *update.parameters()])
        results.append((out, grads))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-4, rtol=1e-4)
    for folded, explicit in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(folded, explicit, atol=1e-3, rtol=1e-4)


def test_an_adapter_on_the_outer_products_output_layer_takes_part() -> None:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    update = inject_adapter_in_model(LoraConfig(r=2, target_modules=["out"]), OuterProductUpdate(12, 8, None))
    torch.nn.init.normal_(update.out.lora_B["default"].weight)  # a trained adapter (peft starts it at zero)
    s, mask = torch.randn(1, 6, 12), torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        adapted = update(s, mask)
        torch.testing.assert_close(adapted, explicit_outer_product(update, s, mask), atol=1e-4, rtol=1e-4)
        update.out = update.out.base_layer
        assert (adapted - update(s, mask)).abs().max() > 0.1  # the adapter's share is in the update


def test_an_untrained_model_samples_its_prior() -> None:
    net = tiny_net()
    batch = make_batch([12, 7])
    gen = torch.Generator().manual_seed(0)
    samples = net.sample(batch, n_samples=3, n_steps=5, generator=gen)
    assert samples.shape == (2, 3, 12, 3)
    prior, has_prior = net.prior_for(batch)
    assert has_prior and prior[0, :12].abs().sum() > 0
    torch.testing.assert_close(samples, prior.unsqueeze(1).expand_as(samples), atol=1e-4, rtol=0)
    given = batch | {"prior_coords": batch["coords"]}
    torch.testing.assert_close(net.sample(given, n_samples=2, n_steps=3)[:, 0], batch["coords"], atol=1e-4, rtol=0)


def test_the_prior_follows_the_stage_a_pairs() -> None:
    batch = make_batch([20])
    prior, _ = tiny_net().prior_for(batch)
    paired = torch.linalg.norm(prior[0, 0] - prior[0, 19])
    assert 8.0 < paired < 13.0  # residues 0 and 19 pair: about 10.4 A apart in the secondary-structure model


def test_template_priors_never_use_the_target_itself_nor_a_near_duplicate_in_training() -> None:
    from rna_hpc.model.prior import prior_coords
    from rna_hpc.model.template_prior import TemplatePrior

    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGU"), 30))
    near = seq[:27] + "".join("A" if c != "A" else "C" for c in seq[27:])  # 90 % identical
    remote = seq[:15] + "".join(rng.choice(list("ACGU"), 15))  # half identical
    chains = {"self": random_chain(30, rng), "near": random_chain(30, rng), "remote": random_chain(30, rng)}
    samples = [
        {"target_id": t, "sequence": s, "coords": chains[t][None]}
        for t, s in (("self", seq), ("near", near), ("remote", remote))
    ]
    training = TemplatePrior.from_samples(samples, max_identity=0.8)
    assert training.best_hit("self", seq).target_id == "remote"  # itself and the 93 %-identical chain are skipped
    assert TemplatePrior.from_samples(samples, max_identity=0.95).best_hit("self", seq).target_id == "near"
    predicting = TemplatePrior.from_samples(samples, exclude_self=False)
    assert predicting.best_hit("self", seq).target_id == "self"  # at predict time nothing is excluded
    np.testing.assert_allclose(predicting.chain("query", seq), chains["self"])
    # the template covers the first half: those residues are copied; a training crop is a slice of its chain's prior
    prior = training.chain("self", seq)
    d_prior = np.linalg.norm(prior[:15, None] - prior[None, :15], axis=-1)
    d_remote = np.linalg.norm(chains["remote"][:15, None] - chains["remote"][None, :15], axis=-1)
    np.testing.assert_allclose(d_prior, d_remote, atol=1e-6)
    np.testing.assert_allclose(training.crop("self", seq[5:20], np.arange(5, 20)), prior[5:20])
    batch = make_batch([30])
    batch["target_id"], batch["seq"][0] = ["self"], torch.tensor(["ACGU".index(c) for c in seq])
    got = prior_coords(batch, "template", training)
    np.testing.assert_allclose(got[0].numpy(), prior, atol=1e-4)
    with pytest.raises(InputError, match="template index"):
        prior_coords(batch, "template", None)


def test_untrained_torsion_head_outputs_the_aform_helix() -> None:
    net = tiny_net()
    helix = torch.tensor(aform_helix(10), dtype=torch.float32).unsqueeze(0)
    angles, valid = virtual_torsions(helix, torch.ones(1, 10, dtype=torch.bool))
    assert valid[0, 1:-2].all() and not valid[0, 0].any() and not valid[0, -1].any()
    torch.testing.assert_close(angles[0, 1:-2], angles[0, 1:2].expand(7, 2), atol=1e-4, rtol=0)
    torsion = net(make_batch([10]))["torsion"]
    expect = torch.stack([angles[0, 2].sin(), angles[0, 2].cos()], dim=-1)
    torch.testing.assert_close(torsion[0, 5], expect, atol=1e-5, rtol=0)
    assert 140 < math.degrees(angles[0, 2, 0]) < 160  # the virtual bond angle of A-form RNA


def test_kabsch_recovers_a_rigid_motion() -> None:
    x = torch.randn(2, 15, 3) * 10
    rot = random_rotations(2, generator=torch.Generator().manual_seed(1))
    moved = x @ rot + torch.tensor([1.0, -2.0, 3.0])
    r, t = kabsch(x, moved, torch.ones(2, 15, dtype=torch.bool))
    torch.testing.assert_close(x @ r + t, moved, atol=1e-4, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2), atol=1e-5)


def test_losses_score_the_truth_best() -> None:
    batch = make_batch([16, 12])
    coords, cm = batch["coords"], batch["coord_mask"]
    angles, _ = virtual_torsions(coords, cm)
    true = torch.stack([angles.sin(), angles.cos()], dim=-1)
    assert torsion_loss(true, coords, cm) < 1e-6
    assert torsion_loss(true.flip(-1), coords, cm) > 0.1
    rot = random_rotations(2, generator=torch.Generator().manual_seed(2))
    assert diffusion_loss(coords @ rot + 5.0, coords, cm, torch.ones(2)) < 1e-6
    noisy = coords + 3.0 * torch.randn_like(coords)
    assert diffusion_loss(noisy, coords, cm, torch.ones(2)) > 1.0
    assert lddt_loss(coords @ rot, coords, cm) < lddt_loss(noisy, coords, cm) - 0.2


def test_losses_ignore_unobserved_and_padded_residues() -> None:
    net = tiny_net().eval()
    batch = make_batch([12, 9], seed=5)
    batch["coord_mask"][0, 4] = False
    batch["coords"][0, 4] = 1e6  # garbage where unobserved: must not matter
    gen = torch.Generator().manual_seed(0)
    out = net(batch)
    a = net.loss(batch, out, {}, generator=gen)
    batch["coords"][0, 4] = -3e5
    b = net.loss(batch, out, {}, generator=torch.Generator().manual_seed(0))
    for key in ("distogram", "torsion", "lddt", "diffusion", "loss"):
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_a_non_finite_loss_names_the_targets() -> None:
    net = tiny_net()
    batch = make_batch([10, 8])
    batch["target_id"] = ["1ABC_A", "R1107"]
    batch["coords"][1, 3] = float("nan")
    with pytest.raises(TrainingFailed, match=r"non-finite loss .*1ABC_A, R1107"):
        net.loss(batch, net(batch), {})
