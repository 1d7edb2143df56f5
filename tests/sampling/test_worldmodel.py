"""The world-model sampler: deterministic per unit, reads the map it is given, carries its settings."""

import copy

import numpy as np
import pytest
import torch

from vtrial.model.checkpoint import load_checkpoint, save_checkpoint
from vtrial.model.corpus import make_pairs
from vtrial.model.train import train
from vtrial.sampling.worldmodel import WorldModelSampler


def _units(n=3):
    from vtrial.spec.protocol import parse_protocol
    from vtrial.trial import build_units

    p = parse_protocol(
        {
            "name": "wm",
            "seed": 2,
            "cohort": {"size": n},
            "arms": [{"name": "dof", "drugs": [{"drug": "dofetilide", "dose": {"value": 500, "unit": "ug"}}]}],
            "schedule": {"times_h": [-0.5, 2.0]},
            "sampling": {"samples_per_patient": 2, "sampler": "mechanistic"},
        }
    )
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


def test_the_sampler_reads_the_map_given_only_when_the_model_reads_its_prior(tiny, tmp_path, tiny_config):
    """``WorldModelSampler(coef=...)`` sets the prior beat's map: a model built with ``prior_input`` draws
    other beats under another map, one without it (and no guidance) the same beats."""
    from dataclasses import replace

    from vtrial.physiology.epk import default_coefficients

    _, _, blind_path = tiny
    cfg = tiny_config(
        ae_steps=20,
        diffusion_train_steps=20,
        prior_input=True,
        residual=True,
        map_spread=0.5,
    )
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
        z = m.sample(
            pairs.baseline,
            pairs.prior,
            pairs.action,
            pairs.covariates,
            noise,
            5,
            1.0,
            0.0,
            samples_per_unit=16,
            temperature=temperature,
        )[1].view(3, 16, d)
        return float(z.std(dim=1).mean()), z

    plain = model.sample(
        pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.0, samples_per_unit=16
    )[1].view(3, 16, d)
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
