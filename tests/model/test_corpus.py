"""The training corpus: random maps move the prior and the post-dose beat together."""

import numpy as np
import torch

from vtrial.model.corpus import make_pairs


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
