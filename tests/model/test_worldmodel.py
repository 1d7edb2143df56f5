"""The world model: a tiny training run, checkpoints as safe data, the sampler's determinism and flags."""
import copy
import os
import pickle

import numpy as np
import pytest
import torch

from vtrial.model.corpus import make_pairs
from vtrial.model.diffusion import NoiseSchedule, ddim_sample, training_loss
from vtrial.model.train import TrainConfig, train
from vtrial.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vtrial.sampling.worldmodel import WorldModelSampler


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg = TrainConfig(n_pairs=300, latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=50,
                      ae_steps=60, diffusion_train_steps=60, batch_size=64, lambda0=0.1)
    model, history = train(cfg, log=lambda d: None)
    path = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return model, history, path


def test_tiny_training_learns(tiny):
    model, history, _ = tiny
    assert history["ae_mse"] < 0.02  # beats have ~0.1 mV² variance: the autoencoder has learned something
    assert np.isfinite(history["final_loss"]) and history["final_loss"] < 1.0


def test_checkpoint_reloads_to_the_same_output(tiny):
    model, _, path = tiny
    again = load_checkpoint(path)
    pairs = make_pairs(4, seed=5)
    noise = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(0))
    a = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.1)[0]
    b = again.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.1)[0]
    assert torch.equal(a, b)


def test_batched_sampling_equals_single(tiny):
    model, _, _ = tiny
    pairs = make_pairs(3, seed=6)
    noise = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(1))
    together = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.0)[0]
    for i in range(3):
        one = model.sample(pairs.baseline[i:i + 1], pairs.prior[i:i + 1], pairs.action[i:i + 1],
                           pairs.covariates[i:i + 1], noise[:, i:i + 1], 5, 1.0, 0.0)[0]
        torch.testing.assert_close(together[i:i + 1], one, rtol=1e-4, atol=1e-5)


def test_energy_guidance_pulls_toward_the_prior():
    """With a denoiser that knows nothing (ε̂ = 0), γ > 0 moves samples toward Π(e_EPK)."""
    sched = NoiseSchedule(50)
    p = torch.full((16, 4), 2.0)
    noise = torch.randn(11, 16, 4, generator=torch.Generator().manual_seed(2))
    free = ddim_sample(lambda z, t: torch.zeros_like(z), noise, sched, 10, eta=0.0)
    guided = ddim_sample(lambda z, t: torch.zeros_like(z), noise, sched, 10, eta=0.0, prior_latent=p, gamma=0.3)
    assert ((guided - p) ** 2).mean() < ((free - p) ** 2).mean()


def test_loss_with_lambda_zero_is_pure_denoising():
    z0, p = torch.randn(32, 4), torch.randn(32, 4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    eps_fn = lambda z, t: 0.5 * z  # noqa: E731
    l0, parts0 = training_loss(eps_fn, z0, p, NoiseSchedule(50), 0.0, g1)
    l1, parts1 = training_loss(eps_fn, z0, p, NoiseSchedule(50), 1.0, g2)
    assert float(l0) == pytest.approx(parts0["mse"], rel=1e-5)
    assert float(l1) == pytest.approx(parts1["mse"] + parts1["weighted_energy"], rel=1e-5) and float(l1) > float(l0)


def test_missing_and_truncated_checkpoints(tiny, tmp_path):
    _, _, path = tiny
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt: not a readable checkpoint"):
        load_checkpoint(cut)


def test_wrong_architecture_and_lead_count(tiny, tmp_path):
    model, _, path = tiny

    def with_arg(key, value, name):
        blob = torch.load(path, weights_only=True)
        blob["model_args"][key] = value
        torch.save(blob, tmp_path / name)
        return tmp_path / name

    with pytest.raises(CheckpointError, match=r"other.pt: weights do not fit the architecture"):
        load_checkpoint(with_arg("width", 64, "other.pt"))
    with pytest.raises(CheckpointError, match=r"leads.pt: model has 12 lead\(s\), expected 1"):
        load_checkpoint(with_arg("n_leads", 12, "leads.pt"))
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"not a vtrial world-model checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


class Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/vtrial_pwned_by_checkpoint",))


def test_checkpoint_with_a_pickled_callable_is_refused_without_running_it(tiny, tmp_path):
    _, _, path = tiny
    marker = "/tmp/vtrial_pwned_by_checkpoint"
    if os.path.exists(marker):
        os.remove(marker)
    blob = torch.load(path, weights_only=True)
    blob["extra"] = {"payload": Boom()}
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        torch.save(blob, f, pickle_module=pickle)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused to load"):
        load_checkpoint(evil)
    assert not os.path.exists(marker)


def _units(n=3):
    from vtrial.trial import build_units
    from vtrial.spec.protocol import parse_protocol

    p = parse_protocol({"name": "wm", "seed": 2, "cohort": {"size": n},
                        "arms": [{"name": "dof", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]}],
                        "schedule": {"times_h": [-0.5, 2.0]}, "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"}})
    return build_units(p)


def test_worldmodel_sampler_is_deterministic_per_unit_and_flags_nan(tiny):
    _, _, path = tiny
    s = WorldModelSampler(2, path, {"steps": 4})
    u = _units()
    whole = s.sample(u, 9)
    from vtrial.spec.work_units import take

    first = s.sample(take(u, slice(0, 2)), 9)
    np.testing.assert_allclose(whole["qtcf_ms"][:4], first["qtcf_ms"], rtol=1e-5, equal_nan=True)
    assert len(whole["valid"]) == 2 * len(u["patient"])
    # a model that emits NaN: every beat is kept and flagged, none passed on as a number
    s.model.autoencoder.decoder.fc.bias.data[0] = float("nan")
    bad = s.sample(u, 9)
    assert len(bad["valid"]) == len(whole["valid"])
    assert not bad["valid"].any() and set(bad["reason"]) == {"non_finite"}
    assert np.isnan(bad["qtcf_ms"]).all()


def test_initialisation_is_seeded_by_the_generator_alone():
    """Same seed, same weights — whatever the global RNG holds; and the global RNG is neither read nor moved."""
    from vtrial.model.train import seeded_init
    from vtrial.model.network import WorldModel

    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        m = WorldModel(latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=50)
        after_build = torch.get_rng_state()
        seeded_init(m, torch.Generator().manual_seed(3))
        assert torch.equal(torch.get_rng_state(), after_build)  # seeded_init draws nothing from the global RNG
        assert not torch.equal(before, after_build)  # (building a module does; its draws are overwritten)
        weights.append(m.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert torch.equal(weights[0]["projection.weight"], torch.eye(8))


def test_training_leaves_the_global_rng_alone():
    cfg = TrainConfig(n_pairs=40, latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=20,
                      ae_steps=3, diffusion_train_steps=3, batch_size=16)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    a, _ = train(cfg, log=lambda d: None)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(12)
    b, _ = train(cfg, log=lambda d: None)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_eval_writes_the_layout_with_a_paired_prior_comparison(tiny, tmp_path):
    import json

    from typer.testing import CliRunner

    from vtrial.cli import app
    from vtrial.studies.worldmodel_eval import METRICS, paired_difference

    _, _, path = tiny
    res = CliRunner().invoke(app, ["eval", "--checkpoint", str(path), "--ablation", str(path), "--out",
                                   str(tmp_path), "--pairs", "12", "--samples", "20"])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "eval.json").read_text())
    for block in (r["heldout"]["prior"], r["heldout"]["ablation"], r["heldout"]["mechanistic"], r["train"]):
        assert set(METRICS) <= set(block)
        assert 0.0 <= block["coverage90"] <= 1.0 and 0.0 <= block["hallucination_rate"] <= 1.0
    diff = r["prior_minus_ablation"]["dqtcf_mae_ms"]
    # the mean of the per-pair differences is the difference of the two MAEs
    assert diff["mean"] == pytest.approx(r["heldout"]["prior"]["dqtcf_mae_ms"] - r["heldout"]["ablation"]["dqtcf_mae_ms"],
                                         abs=1e-4)
    assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    same = paired_difference(np.arange(5.0), np.arange(5.0), seed=0)
    assert same == {"mean": 0.0, "ci95": [0.0, 0.0]}


def test_random_maps_move_prior_and_post_dose_beat_together():
    """With ``map_spread`` each pair has its own Δ(block) map; the patients, drugs and baselines are
    those of the shipped-map corpus, placebo pairs are untouched, and the prior moves with the target."""
    from vtrial.model.corpus import random_map_shifts

    shipped = make_pairs(64, seed=9)
    rand = make_pairs(64, seed=9, map_spread=0.5)
    assert torch.equal(shipped.baseline, rand.baseline) and torch.equal(shipped.action, rand.action)
    placebo = np.array([d == "placebo" for d in shipped.drug])
    assert placebo.any() and (~placebo).any()
    assert torch.equal(shipped.prior[placebo], rand.prior[placebo])
    moved_prior = (shipped.prior - rand.prior).abs().amax(dim=1)
    moved_target = (shipped.target_clean - rand.target_clean).abs().amax(dim=1)
    assert (moved_prior[~placebo] > 1e-3).float().mean() > 0.8
    # where the map moved the prior, the ground truth moved too (it is built on the same post-dose waves)
    assert (moved_target[moved_prior > 1e-3] > 1e-3).all()
    # reproducible from the seed; the map's draws are independent of the shipped-map corpus's
    assert torch.equal(rand.prior, make_pairs(64, seed=9, map_spread=0.5).prior)
    # with no spread and all weight on the cell map the changes would follow ΔAPD90 — check sign on hERG
    b = np.zeros((2, 7))
    b[1, 0] = 0.5
    s = random_map_shifts(b, np.ones(2), 0.0, np.random.default_rng(0))
    assert s["jtpeak_ms"][0] == 0 and s["tpte_ms"][0] == 0 and s["jtpeak_ms"][1] > 10


def test_residual_diffusion_round_trips_and_samples_around_the_prior(tmp_path):
    """A residual model (``prior_input`` + ``residual``) diffuses the latent's normalized departure from
    the prior beat's: it trains, reloads to the same samples, and its samples decode from latents near
    the prior's (where an untrained model's residual ~ N(0, 1) puts them)."""
    cfg = TrainConfig(n_pairs=200, latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=50, ae_steps=40,
                      diffusion_train_steps=40, batch_size=64, prior_input=True, residual=True, map_spread=0.5)
    model, history = train(cfg, log=lambda d: None)
    assert np.isfinite(history["final_loss"]) and model.model_args["residual"] is True
    assert (model.r_std > 0).all() and not torch.equal(model.r_std, torch.ones(8))
    path = save_checkpoint(model, tmp_path / "res.pt")
    again = load_checkpoint(path)
    pairs = make_pairs(4, seed=5)
    noise = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(0))
    a, z, _ = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.01)
    b = again.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.01)[0]
    assert torch.equal(a, b)
    with torch.no_grad():
        r = model.to_residual(z, model.latent(pairs.prior))
    torch.testing.assert_close(model.from_residual(r, model.latent(pairs.prior)), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="prior_input"):
        train(TrainConfig(n_pairs=10, ae_steps=0, diffusion_train_steps=0, residual=True), log=lambda d: None)



def test_the_sampler_reads_the_map_given_only_when_the_model_reads_its_prior(tiny, tmp_path):
    """``WorldModelSampler(coef=...)`` sets the prior beat's map: a model built with ``prior_input`` draws
    other beats under another map, one without it (and no guidance) the same beats."""
    from dataclasses import replace

    from vtrial.physiology.epk import default_coefficients

    _, _, blind_path = tiny
    cfg = TrainConfig(n_pairs=200, latent_dim=8, channels=8, width=32, depth=1, diffusion_steps=50, ae_steps=20,
                      diffusion_train_steps=20, batch_size=64, prior_input=True, residual=True, map_spread=0.5)
    reads_path = save_checkpoint(train(cfg, log=lambda d: None)[0], tmp_path / "reads.pt")
    c = default_coefficients()
    doubled = replace(c, jtpeak_ms={**c.jtpeak_ms, "hERG": 2 * c.jtpeak_ms["hERG"]})
    u = _units()
    assert (u["block"][:, 0] > 0).any()
    for path, follows in ((blind_path, False), (reads_path, True)):
        a, b = (WorldModelSampler(2, path, {"steps": 4, "gamma": 0.0}, coef=k) for k in (c, doubled))
        assert a.follows_map is follows
        same = torch.equal(a.beats(u, 9)[0], b.beats(u, 9)[0])  # the beats: a tiny model's may not measure
        assert same is not follows


def test_temperature_widens_the_samples_and_a_checkpoint_carries_its_sampler_settings(tiny, tmp_path):
    """``temperature`` scales the sampler's noise: 1 is the plain sampler, above 1 the S samples of a unit
    spread wider around their mean — by exactly the temperature where the denoiser is the exact one of a
    Gaussian (the sampler is then linear in its noise). Settings stored in a checkpoint (extra["sampler"],
    as ``scripts/select_guidance.py --write`` does) override the sampler's defaults, explicit ones
    override both, and they survive a save."""
    from vtrial.sampling.worldmodel import sampler_settings

    model, _, path = tiny
    pairs = make_pairs(3, seed=4)
    d = model.model_args["latent_dim"]
    noise = torch.randn(6, 3 * 16, d, generator=torch.Generator().manual_seed(1))
    ab = model.schedule.alpha_bar()

    def gaussian_eps(*conditioning):  # the exact ε̂ for latents ~ N(0, 0.3²): no clipping, linear in z
        return lambda z, t: (1 - ab[t][:, None]).sqrt() * z / (ab[t][:, None] * 0.09 + 1 - ab[t][:, None])

    def spread(temperature, m=model):
        z = m.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.0,
                     samples_per_unit=16, temperature=temperature)[1].view(3, 16, d)
        return float(z.std(dim=1).mean()), z

    plain = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.0,
                         samples_per_unit=16)[1].view(3, 16, d)
    assert torch.equal(spread(1.0)[1], plain)
    assert spread(1.5)[0] > spread(1.0)[0]
    exact = copy.deepcopy(model)
    exact.eps_fn = gaussian_eps
    assert spread(1.5, exact)[0] == pytest.approx(1.5 * spread(1.0, exact)[0], rel=1e-4)

    blob = torch.load(path, weights_only=True)
    blob["extra"]["sampler"] = {"gamma": 0.0, "temperature": 1.25}
    tuned = tmp_path / "tuned.pt"
    torch.save(blob, tuned)
    assert WorldModelSampler(2, tuned).settings["temperature"] == 1.25
    assert WorldModelSampler(2, tuned, {"temperature": 1.0}).settings == {**WorldModelSampler.SETTINGS, "gamma": 0.0}
    assert WorldModelSampler(2, path).settings == WorldModelSampler.SETTINGS
    again = load_checkpoint(save_checkpoint(load_checkpoint(tuned), tmp_path / "again.pt"))
    assert sampler_settings(again, {"gamma": None}) == {**WorldModelSampler.SETTINGS, "gamma": 0.0, "temperature": 1.25}
