"""World-model checkpoints: data, not code.

A checkpoint is ``{"format", "version", "model_args", "state_dict", "extra"}`` saved with ``torch.save``
and read with ``torch.load(weights_only=True)``, which refuses pickled callables. It carries its own model
arguments, so loading needs no outside configuration; ``extra["sampler"]`` holds the sampler settings
chosen for its weights.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from vtrial.data import data_file
from vtrial.model.network import WorldModel

FORMAT = "vtrial.worldmodel"
VERSION = 2  # 2: covariates carry the patient's drug sensitivity
DEFAULT_CHECKPOINT = data_file("worldmodel.pt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, naming the file and what was expected."""


def save_checkpoint(model: WorldModel, path: str | Path, extra: dict | None = None) -> Path:
    """Save ``model`` with its arguments, its sampler settings (``extra["sampler"]``) and ``extra``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    if model.sampler_settings:
        extra.setdefault("sampler", dict(model.sampler_settings))
    torch.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "model_args": model.model_args,
            "state_dict": model.state_dict(),
            "extra": extra,
        },
        path,
    )
    return path


def load_checkpoint(path: str | Path, n_leads: int = 1, device: str = "cpu") -> WorldModel:
    """Load a checkpoint safely; raise ``CheckpointError`` naming the file and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data "
            f"(checkpoints are data, not code): {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vtrial world-model checkpoint (expected format {FORMAT!r})")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {blob.get('version')!r}, expected {VERSION}")
    args = dict(blob["model_args"])
    if args.get("n_leads") != n_leads:
        raise CheckpointError(f"{path}: model has {args.get('n_leads')} lead(s), expected {n_leads}")
    model = WorldModel(**args)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the architecture in its model_args {args}: {str(exc).splitlines()[0]}"
        ) from None
    model.sampler_settings = dict((blob.get("extra") or {}).get("sampler") or {})
    return model.to(device).eval()
