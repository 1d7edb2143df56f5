"""Training the world model on the built-in corpus: ``vtrial train CONFIG``.

Two stages: the autoencoder (reconstruction + a small KL term) on baseline, post-dose and prior beats;
then, with the encoder frozen, the denoiser and the prior projection Π_ϕ with the energy-regularized
diffusion loss (``diffusion.training_loss``). Devices, checkpoints and logging live here; the network
files hold only modules.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from torch import nn

from vtrial.model.checkpoint import save_checkpoint
from vtrial.model.corpus import make_pairs
from vtrial.model.diffusion import training_loss
from vtrial.model.network import WorldModel
from vtrial.model.wfdb_corpus import pairs_from_wfdb


# defaults: the shipped checkpoint's configuration (see vtrial/data/worldmodel.md)
@dataclass
class TrainConfig:
    """A training run, as its YAML gives it (``from_yaml`` validates every field: types, ranges, finite)."""

    __pydantic_config__ = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: Annotated[int, Field(ge=0)] = 0
    n_pairs: Annotated[int, Field(gt=0)] = 20000
    # builtin: share of drug pairs given a random in-vitro profile
    virtual_fraction: Annotated[float, Field(ge=0, le=1)] = 0.5
    # builtin: None, the shipped Δ(block) map; a number, random maps (corpus.random_map_shifts)
    map_spread: Annotated[float, Field(ge=0)] | None = None
    data: Literal["builtin", "wfdb"] = "builtin"  # builtin | wfdb
    metadata: str | None = None  # wfdb: table in the ECGRDVQ layout (EGREFID names each record)
    records_dir: str | None = None  # wfdb: folder of the records
    lead: str = "ii"
    latent_dim: Annotated[int, Field(gt=0)] = 32
    channels: Annotated[int, Field(gt=0)] = 32
    width: Annotated[int, Field(gt=0)] = 256
    depth: Annotated[int, Field(gt=0)] = 4
    diffusion_steps: Annotated[int, Field(gt=0)] = 200
    ae_steps: Annotated[int, Field(ge=0)] = 3000
    diffusion_train_steps: Annotated[int, Field(ge=0)] = 6000
    batch_size: Annotated[int, Field(gt=0)] = 256
    lr: Annotated[float, Field(gt=0)] = 2e-3
    kl_weight: Annotated[float, Field(ge=0)] = 1e-4
    slope_weight: Annotated[float, Field(ge=0)] = 0.0  # weight of the first-difference (slope) reconstruction loss
    lambda0: Annotated[float, Field(ge=0)] = 0.1
    prior_input: bool = False  # the denoiser also takes e_EPK's latent as an input
    residual: bool = False  # diffuse the latent's normalized departure from e_EPK's (needs prior_input)
    out: str = "runs/train/worldmodel.pt"
    tracking_uri: str | None = None  # default: a SQLite file under tracking_dir
    tracking_dir: str = "runs/train"
    experiment: str = "vtrial-train"
    threads: Annotated[int, Field(ge=0)] = 0  # 0: torch's default

    @staticmethod
    def from_yaml(path: str | Path) -> TrainConfig:
        """Read and validate a training config; ``ValueError`` names the file and every bad field. An empty
        config is refused: a full default training is hours, not something to start by accident."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: training config not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ValueError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
        if not data:
            raise ValueError(f"{path}: empty config; give at least `out` (see vtrial/data/train_worldmodel.yaml)")
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of training fields, got {type(data).__name__}")
        try:
            return TypeAdapter(TrainConfig).validate_python(data)
        except ValidationError as err:
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
            known = ", ".join(f.name for f in fields(TrainConfig))
            hint = f" (known: {known})" if any("Unexpected keyword" in p for p in problems) else ""
            raise ValueError(f"{path}: " + "; ".join(problems) + hint) from None


def seeded_init(model: WorldModel, generator: torch.Generator) -> None:
    """Draw every linear and convolutional layer's weights as PyTorch's defaults do (Kaiming-uniform
    weights, uniform biases within 1/√fan_in), from ``generator`` — no global RNG is read or seeded. Π_ϕ
    keeps its identity start."""
    for m in model.modules():
        if m is model.projection or not isinstance(m, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
            continue
        nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
        if m.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def _batches(n: int, batch: int, rng: np.random.Generator):
    while True:
        yield torch.as_tensor(rng.integers(0, n, batch))


def train(cfg: TrainConfig, log=print) -> tuple[WorldModel, dict]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    if cfg.data == "wfdb":
        if not cfg.metadata or not cfg.records_dir:
            raise ValueError("data: wfdb needs metadata and records_dir")
        pairs, skipped = pairs_from_wfdb(cfg.metadata, cfg.records_dir, cfg.lead)
        for s in skipped:
            log({"skipped_record": s})
    elif cfg.data == "builtin":
        pairs = make_pairs(cfg.n_pairs, cfg.seed, virtual_fraction=cfg.virtual_fraction, map_spread=cfg.map_spread)
    else:
        raise ValueError(f"data = {cfg.data!r}; use builtin or wfdb")
    history = {"corpus_s": time.perf_counter() - t0, "pairs": float(len(pairs))}
    with torch.random.fork_rng():  # the modules' own default draws are thrown away: the caller's RNG stays put
        model = WorldModel(
            cfg.latent_dim,
            cfg.channels,
            cfg.width,
            cfg.depth,
            pairs.baseline.shape[1],
            1,
            cfg.diffusion_steps,
            cfg.prior_input,
            cfg.residual,
        )
    seeded_init(model, gen)  # the one generator behind every torch draw of training

    # stage 1: autoencoder on all beats
    beats = torch.cat([pairs.baseline, pairs.target, pairs.prior])
    opt = torch.optim.AdamW(model.autoencoder.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.ae_steps, 1))
    it = _batches(len(beats), cfg.batch_size, rng)
    t0 = time.perf_counter()
    for step in range(cfg.ae_steps):
        x = beats[next(it)]
        rec, mu, logvar = model.autoencoder(x, gen)
        mse = ((rec - x) ** 2).mean()
        # slopes matter as much as levels: tangent T-end and QRS edges are read off the derivative
        slope_mse = ((rec.diff(dim=1) - x.diff(dim=1)) ** 2).mean() * cfg.slope_weight
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).mean()
        loss = mse + slope_mse + cfg.kl_weight * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == cfg.ae_steps - 1:
            log({"stage": "autoencoder", "step": step, "mse": float(mse.detach()), "kl": float(kl.detach())})
    history["ae_s"] = time.perf_counter() - t0
    history["ae_mse"] = float(mse.detach()) if cfg.ae_steps else float("nan")

    # latent normalisation from the post-dose beats (encoder frozen from here on)
    model.autoencoder.requires_grad_(False)
    with torch.no_grad():
        mu_t = model.autoencoder.encode(pairs.target)
        model.z_mean.copy_(mu_t.mean(0))
        model.z_std.copy_(mu_t.std(0).clamp(min=1e-3))
        z_target = model.latent(pairs.target)
        z_base = model.latent(pairs.baseline)
        z_prior_raw = model.latent(pairs.prior)
        if model.residual:
            r = z_target - z_prior_raw
            model.r_mean.copy_(r.mean(0))
            model.r_std.copy_(r.std(0).clamp(min=1e-3))
            z_target = model.to_residual(z_target, z_prior_raw)  # the diffused variable

    # stage 2: denoiser and Π_ϕ with the energy-regularised loss
    params = list(model.denoiser.parameters()) + list(model.projection.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.diffusion_train_steps, 1))
    it = _batches(len(pairs), cfg.batch_size, rng)
    t0 = time.perf_counter()
    for step in range(cfg.diffusion_train_steps):
        idx = next(it)
        p = model.projection(z_prior_raw[idx])
        if model.residual:  # the energy term compares like with like: Π_ϕ(e_EPK) in the diffused units
            p = model.to_residual(p, z_prior_raw[idx])
        eps_fn = model.eps_fn(z_base[idx], pairs.action[idx], pairs.covariates[idx], z_prior_raw[idx])
        loss, parts = training_loss(eps_fn, z_target[idx], p, model.schedule, cfg.lambda0, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == cfg.diffusion_train_steps - 1:
            log({"stage": "diffusion", "step": step, "loss": float(loss.detach()), **parts})
    history["diffusion_s"] = time.perf_counter() - t0
    history["final_loss"] = float(loss.detach()) if cfg.diffusion_train_steps else float("nan")
    model.eval()
    return model, history


def train_and_save(cfg: TrainConfig, log=print) -> tuple[Path, dict]:
    """Train and save the checkpoint (with its config and history in ``extra``)."""
    model, history = train(cfg, log)
    out = save_checkpoint(model, cfg.out, extra={"train_config": asdict(cfg), "history": history})
    return out, history
