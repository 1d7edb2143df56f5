"""The trial report: ``report.html`` (self-contained, images embedded) and the same figures as PNGs.

Figures: ΔΔQTcF over time per arm with 90% bands and the 10-ms line; concentration vs ΔΔQTcF with the
C-QTc fit; per-patient risk distributions per arm; baseline vs sampled post-dose beats on ECG grid paper;
the TdP map (ΔΔQTcF vs ΔΔJ-Tpeak_c with the category regions). Tables: the arm summary (ICH E14 verdict,
μ_R, σ_R, S(a), rank), comparisons, C-QTc and TdP categories; warnings are shown first.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
import polars as pl

from vtrial.outputs import store
from vtrial.stats import risk
from vtrial.stats.analysis import placebo_index, single_drug_arms

FIGURES = ("ddqtcf_time_course", "cqtc", "patient_risk", "beats", "tdp_map")
TDP_COLORS = {0: "#2e7d32", 1: "#f9a825", 2: "#c62828"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode()


def time_course_figure(arms: pl.DataFrame):
    plt = _plt()
    has_plc = arms["ddqtcf_ms"].is_not_null().any()
    col = "ddqtcf_ms" if has_plc else "dqtcf_ms"
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in arms["arm"].unique(maintain_order=True):
        a = arms.filter(pl.col("arm") == name).sort("time_h")
        if a[col].is_null().all():
            continue
        t = a["time_h"].to_numpy()
        ax.plot(t, a[col].fill_null(np.nan).to_numpy(), marker="o", ms=3, label=name)
        ax.fill_between(
            t,
            a[f"{col}_ci90_lo"].fill_null(np.nan).to_numpy(),
            a[f"{col}_ci90_hi"].fill_null(np.nan).to_numpy(),
            alpha=0.2,
        )
    ax.axhline(risk.E14_THRESHOLD_MS, color="crimson", ls="--", lw=1, label="10 ms")
    ax.set_xlabel("time after dose (h)")
    ax.set_ylabel(("ΔΔQTcF" if has_plc else "ΔQTcF") + " (ms), mean with 90% CI")
    if not has_plc:
        ax.set_title("ΔΔQTcF absent: " + risk.NO_PLACEBO, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def cqtc_figure(patients: pl.DataFrame, cqtc: pl.DataFrame, arm_drugs: dict[int, str | None], placebo_idx: int | None):
    """Per drug: each patient's ΔΔQTcF (ΔQTcF without placebo) vs free concentration, the fitted line and
    the prediction at the geometric-mean Cmax with its 90% CI."""
    plt = _plt()
    drugs = cqtc["drug"].to_list()
    if not drugs:
        return None
    p = risk.with_placebo_correction(patients, placebo_idx).filter(pl.col("time_idx") > 0)
    col = "ddqtcf_ms_mean" if placebo_idx is not None else "dqtcf_ms_mean"
    ncol = min(4, len(drugs))
    nrow = math.ceil(len(drugs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    for ax, row in zip(axes.ravel(), cqtc.iter_rows(named=True)):
        arms = [a for a, d in arm_drugs.items() if d == row["drug"]]
        x = p.filter(pl.col("arm_idx").is_in(arms))
        ax.scatter(x["conc_free_nM"].to_numpy(), x[col].fill_null(np.nan).to_numpy(), s=4, alpha=0.35, color="#455a64")
        if row["status"] == "ok":
            c = np.linspace(0, max(float(x["conc_free_nM"].max()), 1e-9), 50)
            ax.plot(c, (row["trt_effect_ms"] or 0.0) + row["slope_ms_per_nM"] * c, color="crimson", lw=1.5)
            g = row["gm_cmax_free_nM"]
            ax.errorbar(
                [g],
                [row["ddqtcf_at_gm_cmax_ms"]],
                yerr=[
                    [row["ddqtcf_at_gm_cmax_ms"] - row["ddqtcf_at_gm_cmax_ci90_lo"]],
                    [row["ddqtcf_at_gm_cmax_ci90_hi"] - row["ddqtcf_at_gm_cmax_ms"]],
                ],
                fmt="D",
                color="black",
                ms=4,
                capsize=3,
            )
            ax.set_title(f"{row['drug']}: {row['slope_ms_per_nM']:.3g} ms/nM", fontsize=9)
        else:
            ax.set_title(f"{row['drug']}: {row['status'][:40]}", fontsize=8)
        ax.axhline(risk.E14_THRESHOLD_MS, color="crimson", ls="--", lw=0.8)
        ax.set_xlabel("free concentration (nM)", fontsize=8)
        ax.set_ylabel(("ΔΔQTcF" if placebo_idx is not None else "ΔQTcF") + " (ms)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(drugs) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def patient_risk_figure(patients: pl.DataFrame, summary: pl.DataFrame, placebo_idx: int | None):
    """Per arm: the distribution over patients of each patient's expected risk (violin), with every
    patient's 5–95% range over its samples' within-patient SD (grey bars)."""
    plt = _plt()
    pr = risk.patient_risk(patients, placebo_idx, risk.peak_times_from_summary(summary))
    arms = [r for r in summary.iter_rows(named=True) if r["mu_r_ms"] is not None]
    if not arms:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(arms) + 2), 4))
    data, pos = [], []
    for i, r in enumerate(arms):
        x = pr.filter(pl.col("arm_idx") == r["arm_idx"])
        v = x["risk_ms"].fill_null(np.nan).to_numpy()
        sd = x["risk_sd_within_ms"].fill_null(np.nan).to_numpy()
        ok = np.isfinite(v)
        data.append(v[ok])
        pos.append(i)
        jitter = i + 0.25 * (np.linspace(-1, 1, ok.sum()) if ok.sum() > 1 else np.zeros(ok.sum()))
        ax.errorbar(jitter, v[ok], yerr=1.645 * np.nan_to_num(sd[ok]), fmt="none", ecolor="grey", alpha=0.3, lw=0.6)
        ax.plot([i - 0.3, i + 0.3], [r["score_ms"]] * 2, color="crimson", lw=1.5)
    ax.violinplot(data, positions=pos, showmeans=True, widths=0.7)
    ax.set_xticks(pos, [r["arm"] for r in arms], rotation=30, ha="right", fontsize=7)
    ax.axhline(risk.E14_THRESHOLD_MS, color="crimson", ls="--", lw=0.8)
    ax.set_ylabel(f"per-patient risk R = {arms[0]['endpoint'].replace('_ms', '')} at peak (ms)")
    ax.set_title("violin: patients' expected risk; grey: ±1.645 within-patient SD; red bar: S = μ_R + λσ_R", fontsize=8)
    fig.tight_layout()
    return fig


def ecg_grid(ax, t_ms: np.ndarray, lo_mv: float, hi_mv: float):
    """ECG paper: small squares 40 ms × 0.1 mV, large ones 200 ms × 0.5 mV."""
    for x in np.arange(math.floor(t_ms[0] / 40) * 40, t_ms[-1] + 1, 40):
        ax.axvline(x, color="#f4b6b6", lw=0.9 if x % 200 == 0 else 0.3, zorder=0)
    for y in np.arange(math.floor(lo_mv * 10) / 10, hi_mv + 0.1, 0.1):
        ax.axhline(y, color="#f4b6b6", lw=0.9 if abs(round(y * 10) % 5) == 0 else 0.3, zorder=0)
    ax.set_xlim(t_ms[0], t_ms[-1])
    ax.set_ylim(math.floor(lo_mv * 10) / 10, math.ceil(hi_mv * 10) / 10)
    ax.set_aspect(400.0)  # 1 mV as tall as 400 ms is wide: the 40 ms × 0.1 mV squares are square


def example_beats(beats: pl.DataFrame | None, summary: pl.DataFrame) -> pl.DataFrame | None:
    """Of the beats the replicas kept (one patient, every arm and time), those the report shows: each
    arm's pre-dose samples and its samples at the arm's peak time (placebo: the peak time of the arm
    with the largest risk, else the last time)."""
    if beats is None or beats.is_empty():
        return None
    peaks = {r["arm_idx"]: r["peak_time_h"] for r in summary.iter_rows(named=True) if r["peak_time_h"] is not None}
    worst = summary.filter(pl.col("score_ms").is_not_null()).sort("score_ms", descending=True)
    fallback = worst["peak_time_h"][0] if worst.height else float(beats["time_h"].max())
    patient = beats["patient"].min()
    t_peak = pl.col("arm_idx").replace_strict(peaks, default=fallback, return_dtype=pl.Float64)
    return beats.filter(
        (pl.col("patient") == patient)
        & ((pl.col("time_idx") == 0) | ((pl.col("time_h") - t_peak).abs() <= 1e-8 + 1e-5 * t_peak.abs()))
    )


def beats_figure(beats: pl.DataFrame, summary: pl.DataFrame, max_arms: int = 6):
    """Per arm: the baseline samples (black) and the samples at the arm's peak time (colour) of one
    patient; the placebo arm and the arms with the highest S(a), at most ``max_arms``."""
    plt = _plt()
    ranked = summary.sort("score_ms", descending=True, nulls_last=True)
    plc = summary.filter(pl.col("mu_r_ms").is_null() & (pl.col("invalid_samples") < pl.col("n_samples")))[
        "arm"
    ].to_list()
    arms = [a for a in dict.fromkeys(plc[:1] + ranked["arm"].to_list()) if a in set(beats["arm"])][:max_arms]
    if not arms:
        return None
    fs = float(beats["fs_hz"][0])
    n_t = len(beats["beat_mv"][0])
    t_ms = (np.arange(n_t) / fs - 0.4) * 1000.0
    all_v = np.stack(beats["beat_mv"].to_list())
    lo, hi = float(np.nanmin(all_v)) - 0.05, float(np.nanmax(all_v)) + 0.05
    ncol = 1 if len(arms) == 1 else 2
    nrow = math.ceil(len(arms) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.ravel()[len(arms) :]:
        ax.axis("off")
    for ax, arm in zip(axes.ravel(), arms):
        b = beats.filter(pl.col("arm") == arm)
        ecg_grid(ax, t_ms, lo, hi)
        for kind, color, alpha in (("baseline", "black", 0.35), ("post", "#1565c0", 0.45)):
            x = b.filter((pl.col("time_idx") == 0) if kind == "baseline" else (pl.col("time_idx") > 0))
            for i, v in enumerate(x["beat_mv"].to_list()):
                ax.plot(
                    t_ms,
                    v,
                    color=color,
                    lw=0.7,
                    alpha=alpha,
                    label=None if i else (f"{kind} (t = {x['time_h'][0]:g} h)" if kind == "post" else "pre-dose"),
                )
        ax.set_title(
            f"{arm}: patient {int(b['patient'][0])}, {b.filter(pl.col('time_idx') == 0).height} samples each",
            fontsize=9,
        )
        ax.set_ylabel("mV", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
        ax.tick_params(labelsize=7)
    fig.supxlabel("time from R peak (ms); small squares 40 ms × 0.1 mV", fontsize=9)
    fig.tight_layout()
    return fig


def tdp_map_figure(tdp: pl.DataFrame, clf):
    """ΔΔQTcF vs ΔΔJ-Tpeak_c at the classifier's multiple of free Cmax, the category regions shaded."""
    if tdp is None or clf is None:
        return None
    m = f"{clf.multiple:g}x"
    xq, xj = f"ddqtcf_ms_at_{m}", f"ddjtpeakc_ms_at_{m}"
    if xq not in tdp.columns or xj not in tdp.columns:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    x = tdp[xq].fill_null(np.nan).to_numpy()
    y = tdp[xj].fill_null(np.nan).to_numpy()
    pad = 10.0
    xr = (np.nanmin(np.append(x, clf.low_ms)) - pad, np.nanmax(np.append(x, clf.high_ms)) + pad)
    yr = (np.nanmin(np.append(y, clf.low_ms)) - pad, np.nanmax(np.append(y, clf.high_ms)) + pad)
    edges = [-1e9, clf.low_ms, clf.high_ms, 1e9]
    for cat in (0, 1, 2):
        lo, hi = edges[cat], edges[cat + 1]
        if clf.feature == "ddqtcf_ms":
            ax.axvspan(max(lo, xr[0]), min(hi, xr[1]), color=TDP_COLORS[cat], alpha=0.12, lw=0)
        else:
            ax.axhspan(max(lo, yr[0]), min(hi, yr[1]), color=TDP_COLORS[cat], alpha=0.12, lw=0)
    for r, xi, yi in zip(tdp.iter_rows(named=True), x, y):
        known = r["known"]
        ax.scatter(
            [xi],
            [yi],
            s=60,
            color=TDP_COLORS.get(known, "grey"),
            edgecolor="black",
            marker="o" if r["predicted"] == known else "X",
            zorder=3,
        )
        ax.annotate(r["drug"], (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlim(*xr)
    ax.set_ylim(*yr)
    ax.set_xlabel(f"ΔΔQTcF at {m} free Cmax (ms)")
    ax.set_ylabel(f"ΔΔJ-Tpeak_c at {m} free Cmax (ms)")
    ax.set_title(
        "TdP map: shading = predicted region (green low, amber intermediate, red high);\n"
        "colour = known category; X = misclassified",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def html_table(df: pl.DataFrame, digits: int = 1) -> str:
    def cell(v):
        if v is None:
            return "—"
        if isinstance(v, float):
            return "—" if not math.isfinite(v) else (f"{v:.{digits}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.3g}")
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.iter_rows())
    return f"<table><tr>{head}</tr>{rows}</table>"


def write_report(out: Path, protocol, an) -> list[Path]:
    """Write the PNGs and report.html into ``out``; returns their paths. Names are text, never markup:
    an arm called ``$\\alpha$`` is drawn as written (matplotlib's mathtext is off) and escaped in the HTML."""
    with _plt().rc_context({"text.parse_math": False}):
        return _write_report(out, protocol, an)


def _write_report(out: Path, protocol, an) -> list[Path]:
    out = Path(out)
    placebo = placebo_index(protocol)
    beats = example_beats(store.read_beats(out), an.summary)
    figs = {
        "ddqtcf_time_course": time_course_figure(an.arms),
        "cqtc": cqtc_figure(an.patients, an.cqtc, single_drug_arms(protocol), placebo),
        "patient_risk": patient_risk_figure(an.patients, an.summary, placebo),
        "beats": beats_figure(beats, an.summary) if beats is not None else None,
        "tdp_map": tdp_map_figure(an.tdp, an.tdp_classifier),
    }
    titles = {
        "ddqtcf_time_course": "Time course",
        "cqtc": "Concentration–QTc",
        "patient_risk": "Per-patient risk",
        "beats": "Baseline vs sampled post-dose beats",
        "tdp_map": "TdP map",
    }
    paths, sections = [], []
    plt = _plt()
    for name in FIGURES:
        fig = figs[name]
        if fig is None:
            continue
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
        sections.append(f'<h2>{titles[name]}</h2><img src="data:image/png;base64,{_png(fig)}" alt="{name}">')
        plt.close(fig)
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in an.warnings)
    warn_html = f'<div class="warn"><b>Warnings</b><ul>{warn}</ul></div>' if warn else ""
    summary_cols = [
        "arm",
        "endpoint",
        "peak_time_h",
        "peak_ms",
        "ci90_lo_ms",
        "ci90_hi_ms",
        "max_ci90_hi_ms",
        "e14_negative",
        "mu_r_ms",
        "mu_r_boot90_lo_ms",
        "mu_r_boot90_hi_ms",
        "sigma_r_between_ms",
        "sigma_r_within_ms",
        "score_ms",
        "rank",
        "invalid_samples",
    ]
    tables = [
        ("Arms: ICH E14 and risk", html_table(an.summary.select(summary_cols))),
        ("Arm comparisons", html_table(an.comparisons, 3)),
        ("Concentration–QTc (linear mixed-effects model)", html_table(an.cqtc.drop("arms"), 4)),
    ]
    if an.tdp is not None:
        t = an.tdp.with_columns(
            *[
                pl.col(c)
                .cast(pl.Int64)
                .replace_strict({0: "low", 1: "intermediate", 2: "high"}, default=None, return_dtype=pl.Utf8)
                for c in ("known", "predicted", "lodo_predicted")
            ]
        )
        tables.append(("TdP risk category", html_table(t)))
    metric_rows = "".join(
        f"<li>{html.escape(k)} = {v:.3g}</li>" for k, v in sorted(an.metrics.items()) if k.startswith("tdp_")
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vtrial: {html.escape(protocol.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} td,th{{padding:2px 6px;font-size:12px}}
table{{border-collapse:collapse}} tr:nth-child(even){{background:#f5f5f5}} img{{max-width:100%}}
.warn{{background:#fff3e0;border-left:4px solid #ef6c00;padding:4px 12px}}</style></head><body>
<h1>{html.escape(protocol.name)}</h1>
<p>protocol hash <code>{protocol.content_hash}</code>, seed {protocol.seed}, {an.patients["patient"].n_unique()} patients,
{len(protocol.arms)} arms, {len(protocol.schedule.times_h)} times, {protocol.sampling.samples_per_patient} samples each,
sampler <code>{html.escape(protocol.sampling.sampler)}</code>; risk R = ΔΔQTcF at each arm's peak,
S = μ_R + {protocol.risk.aversion_lambda:g}·σ_R; ICH E14 negative when the 90% CI's upper bound stays below 10 ms.</p>
{warn_html}
{"".join(f"<h2>{t}</h2>{h}" for t, h in tables)}
{f"<ul>{metric_rows}</ul>" if metric_rows else ""}
{"".join(sections)}
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return [path, *paths]
