"""Training: a tiny run learns, and its randomness comes from its seed alone."""

import numpy as np
import pytest
import torch

from vtrial.model.train import TrainConfig, train


def test_tiny_training_learns(tiny):
    model, history, _ = tiny
    assert history["ae_mse"] < 0.02  # beats have ~0.1 mV² variance: the autoencoder has learned something
    assert np.isfinite(history["final_loss"]) and history["final_loss"] < 1.0


def test_initialisation_is_seeded_by_the_generator_alone():
    """Same seed, same weights — whatever the global RNG holds; and the global RNG is neither read nor moved."""
    from vtrial.model.network import WorldModel
    from vtrial.model.train import seeded_init

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
    cfg = TrainConfig(
        n_pairs=40,
        latent_dim=8,
        channels=8,
        width=32,
        depth=1,
        diffusion_steps=20,
        ae_steps=3,
        diffusion_train_steps=3,
        batch_size=16,
    )
    torch.manual_seed(11)
    before = torch.get_rng_state()
    a, _ = train(cfg, log=lambda d: None)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(12)
    b, _ = train(cfg, log=lambda d: None)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"empty config; give at least `out`"),
        ("width: [1, 2\n", r"malformed YAML at line 2"),
        ("- 1\n", r"expected a mapping of training fields, got list"),
        ("width: wide\n", r"width: Input should be a valid integer"),
        ("lr: .nan\n", r"lr: Input should be a finite number"),
        (
            "n_pairs: -5\nbatch_size: 0\n",
            r"n_pairs: Input should be greater than 0; batch_size: Input should be greater than 0",
        ),
        ("widht: 3\n", r"widht: Unexpected keyword argument .*known: seed, n_pairs"),
        ("data: csv\n", r"data: Input should be 'builtin' or 'wfdb'"),
    ],
    ids=["empty", "malformed", "list", "string int", "nan lr", "negative sizes", "unknown key", "unknown data"],
)
def test_a_bad_training_config_is_named_before_any_training(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_yaml(path)


def test_a_good_training_config_reads_with_yaml_number_quirks(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("out: m.pt\nlr: 1e-3\nwidth: '64'\n")  # YAML 1.1 reads 1e-3 as a string
    cfg = TrainConfig.from_yaml(path)
    assert cfg.lr == 1e-3 and cfg.width == 64 and cfg.out == "m.pt"
