"""The one list of samplers: each has its class, which reads its defaults from the list."""

from vtrial.sampling.registry import SAMPLER_CLASSES
from vtrial.spec.samplers import DEFAULT_SAMPLER, SAMPLER_SETTINGS, SAMPLERS, unknown_settings


def test_every_sampler_has_its_class_and_its_defaults():
    assert tuple(SAMPLER_CLASSES) == SAMPLERS and DEFAULT_SAMPLER in SAMPLERS
    for name, cls in SAMPLER_CLASSES.items():
        assert cls.SETTINGS == SAMPLER_SETTINGS[name]


def test_unknown_settings_are_listed_sorted():
    assert unknown_settings("mechanistic", {"zeta": 1, "noise_mv": 0.1, "alpha": 2}) == ["alpha", "zeta"]
    assert unknown_settings("worldmodel", None) == []
