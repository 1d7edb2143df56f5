"""Checkpoints as safe data: they reload to the same model, and every unusable one is named."""

import os
import pickle

import pytest
import torch

from vtrial.model.checkpoint import CheckpointError, load_checkpoint
from vtrial.model.corpus import make_pairs


def test_checkpoint_reloads_to_the_same_output(tiny):
    model, _, path = tiny
    again = load_checkpoint(path)
    pairs = make_pairs(4, seed=5)
    noise = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(0))
    a = model.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.1)[0]
    b = again.sample(pairs.baseline, pairs.prior, pairs.action, pairs.covariates, noise, 5, 1.0, 0.1)[0]
    assert torch.equal(a, b)


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


def test_hostile_or_broken_checkpoints_are_named_before_anything_is_allocated(tiny, tmp_path):
    _, _, path = tiny
    good = torch.load(path, weights_only=True)

    def saved(name, **changes):
        blob = {**good, **changes}
        torch.save(blob, tmp_path / name)
        return tmp_path / name

    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint at all\n")
    cases = [
        (tmp_path / "empty.pt", r"empty.pt: not a readable checkpoint"),
        (tmp_path / "text.pt", r"text.pt: not a readable checkpoint"),
        (saved("list.pt", model_args=[1, 2]), r"list.pt: model_args is a list, expected a mapping"),
        (saved("unknown.pt", model_args={**good["model_args"], "heads": 8}), r"unknown model_args \['heads'\]"),
        (
            saved("string.pt", model_args={**good["model_args"], "width": "32"}),
            r"model_args.width = '32', expected a positive int",
        ),
        (saved("nostate.pt", state_dict=None), r"nostate.pt: no state_dict of tensors"),
        # a 2-kB file whose metadata asks for a 200,000-wide network: refused from the shapes, never built
        (
            saved("wide.pt", model_args={**good["model_args"], "width": 200_000}, state_dict={}),
            r"wide.pt: weights do not fit",
        ),
    ]
    for file, message in cases:
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(file)
