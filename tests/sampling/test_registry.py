"""The sampler a protocol asks for, and its checkpoint checked before any work."""

import copy

import torch

from vtrial.model.checkpoint import DEFAULT_CHECKPOINT
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sampling.registry import checkpoint_path, make_sampler, sampling_problems
from vtrial.sampling.worldmodel import WorldModelSampler
from vtrial.spec.protocol import parse_protocol

P = {
    "name": "r",
    "cohort": {"size": 2},
    "arms": [{"name": "placebo", "placebo": True}],
    "schedule": {"times_h": [0, 1]},
    "sampling": {"samples_per_patient": 2},
}


def protocol(**sampling):
    d = copy.deepcopy(P)
    d["sampling"].update(sampling)
    return parse_protocol(d)


def test_each_name_makes_its_sampler_with_the_protocols_settings():
    mech = make_sampler(protocol(sampler="mechanistic", settings={"noise_mv": 0.0}, fs_hz=250))
    assert isinstance(mech, MechanisticSampler) and mech.fs_hz == 250 and mech.settings["noise_mv"] == 0.0
    wm = make_sampler(protocol(settings={"steps": 4}))
    assert isinstance(wm, WorldModelSampler) and wm.settings["steps"] == 4 and wm.s == 2


def test_checkpoint_is_found_relative_to_the_protocol_and_checked(tmp_path, tiny):
    assert checkpoint_path(protocol()) == DEFAULT_CHECKPOINT and sampling_problems(protocol()) == []
    (tmp_path / "m.pt").write_bytes(tiny[2].read_bytes())
    assert checkpoint_path(protocol(checkpoint="m.pt"), tmp_path) == (tmp_path / "m.pt").resolve()
    assert sampling_problems(protocol(checkpoint="m.pt"), tmp_path) == []
    (problem,) = sampling_problems(protocol(checkpoint="gone.pt"), tmp_path)
    assert problem.startswith("sampling.checkpoint: file not found: gone.pt")
    torch.save({"format": "other"}, tmp_path / "x.pt")
    (problem,) = sampling_problems(protocol(checkpoint="x.pt"), tmp_path)
    assert "not a vtrial world-model checkpoint" in problem
