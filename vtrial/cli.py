"""Command line: ``vtrial run | validate`` (a thin layer over the Python API)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Virtual drug trials on simulated ECGs.")
console = Console(stderr=True)


def _load(path: Path):
    from vtrial.protocol import ProtocolError, load_protocol

    try:
        return load_protocol(path)
    except ProtocolError as err:
        console.print(f"[red]invalid protocol[/red] {err.source}")
        for p in err.problems:
            console.print(f"  - {p}", markup=False, highlight=False)
        raise typer.Exit(2)


@app.command()
def validate(protocol: Path = typer.Argument(..., help="protocol YAML")):
    """Check a protocol; name every bad field with its path."""
    p = _load(protocol)
    console.print(f"[green]ok[/green] {protocol}: {p.name!r}, {len(p.arms)} arms, {p.cohort.size} patients, "
                  f"{len(p.schedule.times_h)} times, {p.sampling.samples_per_patient} samples; hash {p.content_hash}")


@app.command()
def run(protocol: Path = typer.Argument(..., help="protocol YAML"),
        out: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the protocol's output.dir)"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster HOST:PORT (default: start Ray locally)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="override the protocol's seed"),
        resume: bool = typer.Option(False, "--resume", help="finish an interrupted run in --out"),
        replicas: Optional[int] = typer.Option(None, "--replicas", help="override compute.replicas"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar")):
    """Run a trial: samples, patients and arms tables, report.html and one MLflow run under --out."""
    from vtrial.engine import RunError, run_trial

    p = _load(protocol)
    try:
        result = run_trial(p, out=out, address=address, seed=seed, resume=resume, replicas=replicas,
                           progress=not quiet, base_dir=protocol.parent)
    except RunError as err:
        console.print(f"[red]error[/red] {err}", highlight=False)
        raise typer.Exit(1)
    table = Table(title=f"{p.name}: peak per arm (90% CI)")
    for col in ("arm", "endpoint", "time (h)", "peak (ms)", "90% CI (ms)", "invalid samples"):
        table.add_column(col)
    for r in result.summary.iter_rows(named=True):
        ci = "—" if r["ci90_lo_ms"] is None else f"{r['ci90_lo_ms']:.1f} to {r['ci90_hi_ms']:.1f}"
        table.add_row(r["arm"], r["endpoint"], f"{r['peak_time_h']:g}",
                      f"{r['peak_ms']:.1f}", ci, str(r["invalid_samples"]))
    Console().print(table)
    console.print(f"tables, report.html and MLflow run in {result.out}")


@app.command()
def train(config: Path = typer.Argument(..., help="training config YAML (see vtrial/data/train_worldmodel.yaml)")):
    """Train the ECG world model on the built-in corpus; logs one MLflow run."""
    from vtrial.model.train import TrainConfig, train_and_save

    try:
        cfg = TrainConfig.from_yaml(config)
    except (ValueError, TypeError, FileNotFoundError) as err:
        console.print(f"[red]invalid config[/red] {err}", highlight=False)
        raise typer.Exit(2)
    out, history = train_and_save(cfg, log=lambda d: console.print(d, highlight=False))
    console.print(f"checkpoint {out}; {history}")


@app.command("eval")
def eval_(checkpoint: Path = typer.Option(..., "--checkpoint", help="world-model checkpoint"),
          out: Path = typer.Option(..., "--out", help="folder for eval.json"),
          ablation: Optional[Path] = typer.Option(None, "--ablation", help="checkpoint trained with λ0 = 0 "
                                                  "(default: CHECKPOINT's name with _ablation, if present)"),
          pairs: int = typer.Option(300, "--pairs"), samples: int = typer.Option(16, "--samples"),
          seed: int = typer.Option(1000, "--seed")):
    """Evaluate a checkpoint on held-out patients and drugs, with and without the prior: OUT/eval.json."""
    import json

    from vtrial.model.evaluate import evaluate
    from vtrial.model.worldmodel import CheckpointError, load_checkpoint

    ablation = ablation or checkpoint.with_name(checkpoint.stem + "_ablation" + checkpoint.suffix)
    try:
        model = load_checkpoint(checkpoint)
        abl = load_checkpoint(ablation) if ablation.is_file() else None
    except CheckpointError as err:
        console.print(f"[red]error[/red] {err}", highlight=False)
        raise typer.Exit(1)
    result = evaluate(model, abl, n_pairs=pairs, samples=samples, seed=seed)
    result["checkpoint"] = str(checkpoint)
    result["ablation_checkpoint"] = str(ablation) if abl is not None else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    console.print_json(json.dumps(result["heldout"]))


if __name__ == "__main__":
    app()
