"""The samplers by name: the class behind each name of ``vtrial.spec.samplers``, and the sampler a
protocol asks for, built on a device."""

from __future__ import annotations

from pathlib import Path

from vtrial.model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from vtrial.sampling.mechanistic import MechanisticSampler
from vtrial.sampling.worldmodel import WorldModelSampler

SAMPLER_CLASSES = {"mechanistic": MechanisticSampler, "worldmodel": WorldModelSampler}


def checkpoint_path(protocol, base_dir: Path | None = None) -> Path:
    """The world-model checkpoint a protocol names (relative to the protocol's folder, else the working
    directory), or the shipped one."""
    s = protocol.sampling
    if s.checkpoint is None:
        return DEFAULT_CHECKPOINT
    ckpt = Path(s.checkpoint).expanduser()
    if not ckpt.is_absolute() and base_dir is not None and (base_dir / ckpt).exists():
        ckpt = base_dir / ckpt
    return ckpt.resolve()


def sampling_problems(protocol, base_dir: Path | None = None) -> list[str]:
    """'sampling.checkpoint: message' when the checkpoint a protocol names is missing or unusable."""
    if protocol.sampling.sampler != "worldmodel" and protocol.sampling.checkpoint is None:
        return []
    path = checkpoint_path(protocol, base_dir)
    if protocol.sampling.checkpoint is not None and not path.is_file():
        return [f"sampling.checkpoint: file not found: {protocol.sampling.checkpoint} (looked in {path})"]
    if protocol.sampling.sampler != "worldmodel":
        return []
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        return [f"sampling.checkpoint: {exc}"]
    return []


def make_sampler(protocol, device: str = "cpu", base_dir: Path | None = None):
    """The protocol's sampler on ``device`` (the world model loads its checkpoint once)."""
    s = protocol.sampling
    if s.sampler == "worldmodel":
        return WorldModelSampler(s.samples_per_patient, checkpoint_path(protocol, base_dir), s.settings, device=device)
    return MechanisticSampler(s.samples_per_patient, s.fs_hz, s.settings, device=device)
