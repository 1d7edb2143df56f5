"""Command line: ``vtrial run | validate | report | drugs | examples | train | eval | data | benchmark``
(a thin layer over the Python API)."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from vtrial.data import example_protocol, example_protocols, package_version
from vtrial.model.checkpoint import CheckpointError, load_checkpoint
from vtrial.model.train import TrainConfig, train_and_save
from vtrial.outputs import store
from vtrial.outputs.run_folder import RESOLVED
from vtrial.outputs.tracking import log_training
from vtrial.sources.physionet import DATABASES, download_database
from vtrial.sources.study_table import load_clinical_table
from vtrial.spec.drugs import HERG_MODELS, drug_table
from vtrial.spec.protocol import ProtocolError
from vtrial.spec.samplers import SAMPLERS
from vtrial.stats.tdp import CATEGORY_NAMES
from vtrial.studies.ecgrdvq_benchmark import BENCHMARK_SAMPLERS, lodo_potency_ratios, plot_courses, run_benchmark
from vtrial.studies.epk_fit import EXPOSURES, MAP_MODELS
from vtrial.studies.worldmodel_eval import evaluate
from vtrial.trial import RunError, analyse_run, load_protocol, run_trial

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Virtual drug trials on simulated ECGs.")
console = Console(stderr=True)
DATA_HELP = "folder where the protocol's relative cohort data paths (cohort.table, cohort.wfdb) are also looked up"


def _version(value: bool):
    if value:
        print(f"vtrial {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
):
    """Virtual drug trials on simulated ECGs."""


def _protocol_path(path: Path) -> Path:
    """A protocol file, or the name of a shipped example (``vtrial examples``)."""
    if not path.exists() and path.suffix == "" and path.name in example_protocols():
        return example_protocol(path.name)
    return path


def _load(path: Path, data_dir: Path | None = None):
    try:
        return load_protocol(path, data_dir)
    except ProtocolError as err:
        console.print(f"[red]invalid protocol[/red] {err.source}")
        for p in err.problems:
            console.print(f"  - {p}", markup=False, highlight=False)
        raise typer.Exit(2) from None


@app.command()
def validate(
    protocol: Path = typer.Argument(..., help="protocol YAML, or the name of a shipped example"),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
):
    """Check a protocol; name every bad field with its path."""
    protocol = _protocol_path(protocol)
    p = _load(protocol, data)
    who = (
        f"{p.cohort.size} patients"
        if p.cohort.size is not None
        else f"every usable {'subject' if p.cohort.table else 'record'} of {p.cohort.table or p.cohort.wfdb}"
    )
    console.print(
        f"[green]ok[/green] {protocol}: {p.name!r}, {len(p.arms)} arms, {who}, "
        f"{len(p.schedule.times_h)} times, {p.sampling.samples_per_patient} samples; hash {p.content_hash}"
    )


@app.command()
def run(
    protocol: Path = typer.Argument(..., help="protocol YAML, or the name of a shipped example"),
    out: str | None = typer.Option(
        None,
        "--out",
        help="output folder: a path, or a pyarrow filesystem URI "
        "(s3://, gs://, hdfs://, file://) on shared storage (default: the protocol's output.dir)",
    ),
    address: str | None = typer.Option(None, "--address", help="Ray cluster HOST:PORT (default: start Ray locally)"),
    seed: int | None = typer.Option(None, "--seed", help="override the protocol's seed"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted run in --out"),
    replicas: int | None = typer.Option(None, "--replicas", help="override compute.replicas"),
    herg_model: str | None = typer.Option(
        None, "--herg-model", help="override herg_model: static (Hill) or dynamic (paced CiPA dynamic hERG model)"
    ),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="a WFDB record that cannot be used is an error (default: skipped and listed in cohort_report.json)",
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow store when the protocol's tracking.uri is unset (default: sqlite file in the output folder)",
    ),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
):
    """Run a trial: samples, patients and arms tables, report.html and one MLflow run under --out."""
    protocol = _protocol_path(protocol)
    p = _load(protocol, data)
    if herg_model is not None:
        if herg_model not in HERG_MODELS:
            console.print(
                f"[red]error[/red] --herg-model {herg_model!r}: expected one of {', '.join(HERG_MODELS)}",
                highlight=False,
            )
            raise typer.Exit(2)
        p = p.replace(herg_model=herg_model)
    previous = signal.signal(signal.SIGTERM, _stop)  # a SIGTERM unwinds like Ctrl-C: Ray shut down, lock released
    try:
        result = run_trial(
            p,
            out=out,
            address=address,
            seed=seed,
            resume=resume,
            replicas=replicas,
            progress=not quiet,
            base_dir=protocol.parent,
            strict=strict,
            tracking_uri=tracking_uri,
            data_dir=data,
        )
    except RunError as err:
        console.print(f"[red]error[/red] {err}", highlight=False)
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, Stopped) as stop:
        name, code = ("SIGTERM", 143) if isinstance(stop, Stopped) else ("Ctrl-C", 130)
        where = out or p.output.dir
        console.print(
            f"[yellow]stopped[/yellow] by {name}; the finished batches are kept in {where}: "
            f"`vtrial run {protocol} --out {where} --resume` runs only the rest",
            highlight=False,
        )
        raise typer.Exit(code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    show_result(result.analysis, p.name)
    console.print(f"tables, report.html and MLflow run in {result.location or result.out}")


class Stopped(Exception):
    """SIGTERM, raised in the main thread so that the run unwinds as for Ctrl-C."""


def _stop(signum, frame):
    raise Stopped()


def show_result(an, name: str) -> None:
    """Print the arm summary, the TdP categories (predicted beside known) and the warnings."""
    endpoint = "ΔΔQTcF" if (an.summary["endpoint"] == "ddqtcf_ms").all() else "ΔQTcF (no placebo arm)"
    table = Table(title=f"{name}: peak {endpoint} per arm (90% CI) and risk")
    for col in ("arm", "time (h)", "peak (ms)", "90% CI (ms)", "E14", "S = μ+λσ (ms)", "rank", "invalid samples"):
        table.add_column(col)
    for r in an.summary.iter_rows(named=True):
        if r["peak_ms"] is None:
            table.add_row(r["arm"], "—", "—", "—", "—", "—", "—", str(r["invalid_samples"]))
            continue
        ci = "—" if r["ci90_lo_ms"] is None else f"{r['ci90_lo_ms']:.1f} to {r['ci90_hi_ms']:.1f}"
        e14 = "—" if r["e14_negative"] is None else ("negative" if r["e14_negative"] else "positive")
        table.add_row(
            r["arm"],
            f"{r['peak_time_h']:g}",
            f"{r['peak_ms']:.1f}",
            ci,
            e14,
            f"{r['score_ms']:.1f}",
            str(r["rank"]),
            str(r["invalid_samples"]),
        )
    Console().print(table)
    if an.tdp is not None:
        t = Table(title="TdP risk category")
        for col in ("drug", "known", "predicted", "leave-one-drug-out"):
            t.add_column(col)
        for r in an.tdp.iter_rows(named=True):
            t.add_row(r["drug"], *(CATEGORY_NAMES.get(r[k], "—") for k in ("known", "predicted", "lodo_predicted")))
        Console().print(t)
        m = an.metrics
        if "tdp_lodo_accuracy" in m:
            Console().print(
                f"TdP leave-one-drug-out accuracy {m['tdp_lodo_correct']:.0f}/{m['tdp_lodo_drugs']:.0f} "
                f"= {m['tdp_lodo_accuracy']:.2f}; Spearman(S at 1× Cmax, category) = "
                f"{m.get('tdp_rank_spearman', float('nan')):.2f}"
            )
    for w in an.warnings:
        console.print(f"[yellow]warning[/yellow] {w}", highlight=False)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a finished run's output folder")):
    """Recompute the tables from a run's samples and regenerate report.html and its PNGs (no sampling)."""
    if not (run_dir / RESOLVED).is_file() or not (run_dir / store.SAMPLES).is_dir():
        console.print(
            f"[red]error[/red] {run_dir}: not a vtrial run folder ({RESOLVED} or {store.SAMPLES} missing)",
            highlight=False,
        )
        raise typer.Exit(2)
    try:
        p, an, paths = analyse_run(run_dir)
    except RunError as err:
        console.print(f"[red]error[/red] {err}", highlight=False)
        raise typer.Exit(1) from None
    show_result(an, p.name)
    console.print(f"wrote {', '.join(str(x.name) for x in paths)} in {run_dir}")


@app.command()
def drugs(
    herg_model: str = typer.Option(
        "static",
        "--herg-model",
        help="static (Hill) or dynamic (CiPA dynamic hERG model, for drugs with binding kinetics)",
    ),
):
    """List the built-in drugs: the channels they block, their PK, hERG kinetics and sources."""
    if herg_model not in HERG_MODELS:
        console.print(
            f"[red]error[/red] --herg-model {herg_model!r}: expected one of {', '.join(HERG_MODELS)}", highlight=False
        )
        raise typer.Exit(2)
    rows = drug_table(herg_model)
    t = Table(title=f"built-in drugs ({len(rows)}); IC50s in nM")
    for col in ("drug", "TdP risk", "channels blocked (IC50 nM)", "free Cmax (nM)", "PK", "hERG kinetics"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["drug"], r["tdp_risk"], r["channels"], r["free_cmax_nM"], r["pk"], r["herg_kinetics"])
    out = Console()
    out.print(t)
    out.print("sources", style="bold")
    for r in rows:
        out.print(f"  {r['drug']}: {r['sources']}", highlight=False)


@app.command()
def examples(name: str | None = typer.Argument(None, help="print this example protocol's YAML")):
    """List the example protocols shipped with vtrial, or print one (to start your own from)."""
    if name is None:
        for n in example_protocols():
            print(n)
        return
    try:
        print(example_protocol(name).read_text(), end="")
    except FileNotFoundError as err:
        console.print(f"[red]error[/red] {err}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def train(config: Path = typer.Argument(..., help="training config YAML (see vtrial/data/train_worldmodel.yaml)")):
    """Train the ECG world model on the built-in corpus; logs one MLflow run."""
    try:
        cfg = TrainConfig.from_yaml(config)
    except (ValueError, TypeError, FileNotFoundError) as err:
        console.print(f"[red]invalid config[/red] {err}", highlight=False)
        raise typer.Exit(2) from None
    out, history = train_and_save(cfg, log=lambda d: console.print(d, highlight=False))
    log_training(out, asdict(cfg), history, Path(cfg.tracking_dir), cfg.tracking_uri, cfg.experiment)
    console.print(f"checkpoint {out}; {history}")


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="world-model checkpoint"),
    out: Path = typer.Option(..., "--out", help="folder for eval.json"),
    ablation: Path | None = typer.Option(
        None,
        "--ablation",
        help="checkpoint trained with λ0 = 0 (default: CHECKPOINT's name with _ablation, if present)",
    ),
    pairs: int = typer.Option(1000, "--pairs"),
    samples: int = typer.Option(64, "--samples"),
    seed: int = typer.Option(1000, "--seed"),
    gamma: float | None = typer.Option(None, "--gamma", help="guidance γ (default: the checkpoint's)"),
    temperature: float | None = typer.Option(
        None, "--temperature", help="noise temperature (default: the checkpoint's)"
    ),
):
    """Evaluate a checkpoint on held-out patients and drugs, with and without the prior: OUT/eval.json."""
    ablation = ablation or checkpoint.with_name(checkpoint.stem + "_ablation" + checkpoint.suffix)
    try:
        model = load_checkpoint(checkpoint)
        abl = load_checkpoint(ablation) if ablation.is_file() else None
    except CheckpointError as err:
        console.print(f"[red]error[/red] {err}", highlight=False)
        raise typer.Exit(1) from None
    result = evaluate(model, abl, n_pairs=pairs, samples=samples, seed=seed, gamma=gamma, temperature=temperature)
    result["checkpoint"] = str(checkpoint)
    result["ablation_checkpoint"] = str(ablation) if abl is not None else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    console.print_json(json.dumps(result["heldout"]))


data_app = typer.Typer(no_args_is_help=True, help="Real data: download PhysioNet databases.")
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download(
    database: str = typer.Argument(..., help="ecgrdvq or ecgdmmld"),
    dest: Path = typer.Option(..., "--dest", help="folder to download into (created; rerun to resume)"),
    base_url: str = typer.Option(
        "https://physionet.org", "--base-url", help="a PhysioNet mirror (BASE/content/DB/, BASE/files/DB/VERSION/)"
    ),
    retries: int = typer.Option(3, "--retries", min=1, help="attempts per record"),
):
    """Download a PhysioNet database with wfdb's downloader: resumable, with progress."""
    if database not in DATABASES:
        console.print(
            f"[red]error[/red] unknown database {database!r}; known: {', '.join(sorted(DATABASES))}", highlight=False
        )
        raise typer.Exit(2)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[record]}"),
        console=console,
    ) as bar:
        task = bar.add_task(database, total=None, record="")

        def step(rec, i, n):
            bar.update(task, completed=i, total=n, record=rec)

        try:
            rep = download_database(database, dest, base_url, retries, on_record=step)
        except ConnectionError as err:
            console.print(f"[red]error[/red] {err}", highlight=False)
            raise typer.Exit(1) from None
    console.print(
        f"{database} {rep.version}: {len(rep.records)} records and {len(rep.extra_files)} tables in {rep.dest}",
        highlight=False,
    )
    for f in rep.missing_extra_files:
        console.print(
            f"[yellow]warning[/yellow] {f} not found on the server; the records are complete", highlight=False
        )
    for rec, why in rep.refused.items():
        console.print(f"refused {rec}: {why}", highlight=False, markup=False, style="red")
    if rep.refused:
        console.print(
            f"{len(rep.refused)} records were refused: the mirror named files vtrial will not write "
            f"(nothing was written for them)",
            highlight=False,
        )
    if rep.failed:
        for rec, err in rep.failed.items():
            console.print(f"[red]failed[/red] {rec}: {err}", highlight=False)
        console.print(
            f"{len(rep.failed)} files or records failed after {retries} attempts; run the same command again to "
            "resume (complete files are kept, partial ones continued)",
            highlight=False,
        )
    if rep.failed or rep.refused:
        raise typer.Exit(1)


bench_app = typer.Typer(no_args_is_help=True, help="vtrial against real studies.")
app.add_typer(bench_app, name="benchmark")


@bench_app.command("ecgrdvq")
def bench_ecgrdvq(
    data: Path = typer.Option(..., "--data", help="folder holding SCR-002.Clinical.Data.csv (directly or in ecgrdvq/)"),
    out: Path = typer.Option(..., "--out", help="folder for ecgrdvq.json and the figure"),
    samples: int = typer.Option(64, "--samples", min=20, help="samples per subject and time"),
    folds: int = typer.Option(4, "--folds", min=2),
    seed: int = typer.Option(
        0, "--seed", help="seed of the samples and the added noise (the subjects' split has its own, fixed)"
    ),
    sampler: list[str] = typer.Option(
        list(BENCHMARK_SAMPLERS), "--sampler", help="samplers to score; the first fills the top-level block"
    ),
    max_nfev: int = typer.Option(400, "--max-nfev", help="evaluations per Δ(block) fit"),
    draws: int | None = typer.Option(
        None,
        "--draws",
        min=1,
        help="draws of each test subject's drug "
        "sensitivity (and PK, with --exposure library) the samples are "
        "spread over (default: one per sample, independent samples)",
    ),
    exposure: str = typer.Option(
        "measured",
        "--exposure",
        help="measured: each subject's measured "
        "concentrations (as the C-QTc baseline reads them); library: the "
        "drug library's population PK, concentrations unknown",
    ),
    fold_map: str = typer.Option(
        "channels",
        "--fold-map",
        help="Δ(block) family of the mechanistic "
        "sampler's out-of-fold fits: channels (per-channel terms) or ord "
        "(the O'Hara–Rudy cell's ΔAPD90 with two gains)",
    ),
    lodo_map: str = typer.Option(
        "ord", "--lodo-map", help="Δ(block) family of the leave-one-drug-out fits: ord or channels"
    ),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="world-model checkpoint (default: the shipped one)"),
    discrepancy: bool = typer.Option(
        True,
        "--discrepancy/--no-discrepancy",
        help="widen each drug's predictions by the fold fit's in-sample misfit of its mean course (model discrepancy)",
    ),
    potency: bool = typer.Option(
        True,
        "--potency/--no-potency",
        help="fit each drug's in-vivo "
        "potency (a factor on the concentration its channels see, prior "
        "centred on 1) with the map; a drug left out takes the others' "
        "geometric mean",
    ),
):
    """The FDA four-drug study as a held-out benchmark: OUT/ecgrdvq.json and OUT/ecgrdvq_ddqtcf.png."""
    name = "SCR-002.Clinical.Data.csv"
    table_path = next((p for p in (data / name, data / "ecgrdvq" / name) if p.is_file()), None)
    if table_path is None:
        console.print(f"[red]error[/red] {name} not found in {data} or {data / 'ecgrdvq'}", highlight=False)
        raise typer.Exit(2)
    unknown = sorted(set(sampler) - set(SAMPLERS))
    if unknown:
        console.print(f"[red]error[/red] unknown sampler {unknown}; available: {', '.join(SAMPLERS)}", highlight=False)
        raise typer.Exit(2)
    if exposure not in EXPOSURES:
        console.print(f"[red]error[/red] --exposure {exposure!r}; available: {', '.join(EXPOSURES)}", highlight=False)
        raise typer.Exit(2)
    for flag, value in (("--fold-map", fold_map), ("--lodo-map", lodo_map)):
        if value not in MAP_MODELS:
            console.print(f"[red]error[/red] {flag} {value!r}; available: {', '.join(MAP_MODELS)}", highlight=False)
            raise typer.Exit(2)
    if checkpoint is not None:
        try:
            load_checkpoint(checkpoint)
        except CheckpointError as exc:
            console.print(f"[red]error[/red] --checkpoint: {exc}", highlight=False)
            raise typer.Exit(2) from None
    table, quirks = load_clinical_table(table_path)
    result, courses = run_benchmark(
        table,
        samples=samples,
        folds=folds,
        seed=seed,
        samplers=tuple(sampler),
        max_nfev=max_nfev,
        draws=draws,
        exposure=exposure,
        fold_map=fold_map,
        lodo_map=lodo_map,
        checkpoint=checkpoint,
        discrepancy=discrepancy,
        potency=potency,
        log=lambda m: console.print(m, highlight=False),
    )
    result["table"] = {"path": str(table_path), "quirks": quirks}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ecgrdvq.json").write_text(json.dumps(result, indent=1, default=float))
    plot_courses(courses, out / "ecgrdvq_ddqtcf.png")
    table_ = Table(title="ECGRDVQ out of fold (ms; coverage as a share)")
    for col in (
        "sampler",
        "drug",
        "peak err",
        "RMSE",
        "cov90",
        "CRPS",
        "LODO peak err",
        "C-QTc peak err",
        "C-QTc CRPS",
    ):
        table_.add_column(col)
    for s in sampler:
        block = result if s == sampler[0] else result[s]
        for d, v in block["drugs"].items():
            lodo = v["lodo_peak_ddqtcf_error_ms"]
            table_.add_row(
                s,
                d,
                f"{v['peak_ddqtcf_error_ms']:+.1f}",
                f"{v['rmse_ddqtcf_ms']:.1f}",
                f"{v['coverage90']:.2f}",
                f"{v['crps_ms']:.1f}",
                "—" if lodo is None else f"{lodo:+.1f}",
                f"{v['cqtc']['peak_ddqtcf_error_ms']:+.1f}",
                f"{v['cqtc']['crps_ms']:.1f}",
            )
    Console().print(table_)
    beats = {"ecgsyn": "mechanistic beats", "corpus": "world-model beats"}
    for m, ratios in lodo_potency_ratios(result).items():
        console.print(
            f"leave-one-drug-out, in-vivo potency needed / given ({beats[m]}): "
            + ", ".join(f"{d} {r:.2f}×" for d, r in ratios.items()),
            highlight=False,
        )
    console.print(f"wrote {out / 'ecgrdvq.json'} and {out / 'ecgrdvq_ddqtcf.png'}", highlight=False)


if __name__ == "__main__":
    app()
