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
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(f"{path}: not a readable checkpoint (empty, truncated or not a torch.save archive)")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data "
            f"(checkpoints are data, not code): {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint (empty, truncated or corrupt?): {first}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vtrial world-model checkpoint (expected format {FORMAT!r})")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {blob.get('version')!r}, expected {VERSION}")
    args = _model_args(path, blob.get("model_args"))
    if args.get("n_leads") != n_leads:
        raise CheckpointError(f"{path}: model has {args.get('n_leads')} lead(s), expected {n_leads}")
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no state_dict of tensors")
    _check_shapes(path, args, state)  # before anything is allocated: metadata cannot ask for 160 GB
    model = WorldModel(**args)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the architecture in its model_args {args}: {str(exc).splitlines()[0]}"
        ) from None
    model.sampler_settings = dict((blob.get("extra") or {}).get("sampler") or {})
    return model.to(device).eval()


MODEL_ARG_TYPES = {
    "latent_dim": int,
    "channels": int,
    "width": int,
    "depth": int,
    "n_samples": int,
    "n_leads": int,
    "diffusion_steps": int,
    "prior_input": bool,
    "residual": bool,
}


def _model_args(path: Path, args) -> dict:
    """A checkpoint's model arguments: a mapping of the known names to values of the right type."""
    if not isinstance(args, dict):
        raise CheckpointError(f"{path}: model_args is a {type(args).__name__}, expected a mapping")
    unknown = sorted(set(args) - set(MODEL_ARG_TYPES))
    if unknown:
        raise CheckpointError(f"{path}: unknown model_args {unknown}; known: {', '.join(MODEL_ARG_TYPES)}")
    for k, v in args.items():
        kind = MODEL_ARG_TYPES[k]
        if type(v) is not kind or (kind is int and v < 1):
            raise CheckpointError(
                f"{path}: model_args.{k} = {v!r}, expected a {'positive int' if kind is int else kind.__name__}"
            )
    return dict(args)


def _check_shapes(path: Path, args: dict, state: dict) -> None:
    """Compare the architecture of ``args`` with the tensors of ``state`` on the meta device (no memory),
    so that metadata inconsistent with the weights is refused before the model is built."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in WorldModel(**args).state_dict().items()}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: model_args {args} do not make a model: {exc}") from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
    if wrong or missing or extra:
        detail = (
            f"{wrong[0]} is {got[wrong[0]]}, the architecture needs {expected[wrong[0]]}"
            if wrong
            else f"missing {missing[:3]}"
            if missing
            else f"unexpected {extra[:3]}"
        )
        raise CheckpointError(f"{path}: weights do not fit the architecture in its model_args {args}: {detail}")
