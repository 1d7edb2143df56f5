"""The trial report: a self-contained HTML page (images embedded) with the per-arm tables and plots.

This first version shows ΔΔQTcF (or ΔQTcF without a placebo arm) over time per arm with 90% bands and
the 10-ms line, and the per-arm summary table.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import polars as pl


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode()


def time_course_figure(arms: pl.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_plc = arms["ddqtcf_ms"].is_not_null().any()
    col = "ddqtcf_ms" if has_plc else "dqtcf_ms"
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in arms["arm"].unique(maintain_order=True):
        a = arms.filter(pl.col("arm") == name).sort("time_h")
        if a[col].is_null().all():
            continue
        t = a["time_h"].to_numpy()
        ax.plot(t, a[col].to_numpy(), marker="o", ms=3, label=name)
        ax.fill_between(t, a[f"{col}_ci90_lo"].to_numpy(), a[f"{col}_ci90_hi"].to_numpy(), alpha=0.2)
    ax.axhline(10.0, color="crimson", ls="--", lw=1, label="10 ms")
    ax.set_xlabel("time after dose (h)")
    ax.set_ylabel(("ΔΔQTcF" if has_plc else "ΔQTcF") + " (ms), mean with 90% CI")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def html_table(df: pl.DataFrame) -> str:
    def cell(v):
        return f"{v:.1f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.iter_rows())
    return f"<table><tr>{head}</tr>{rows}</table>"


def write_report(out: Path, protocol, arms: pl.DataFrame, summary: pl.DataFrame) -> Path:
    fig = time_course_figure(arms)
    fig.savefig(Path(out) / "ddqtcf_time_course.png", dpi=110)
    img = _png(fig)
    table = html_table(summary)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vtrial: {html.escape(protocol.name)}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}} td,th{{padding:2px 8px}}</style></head><body>
<h1>{html.escape(protocol.name)}</h1>
<p>protocol hash <code>{protocol.content_hash}</code>, seed {protocol.seed}, {protocol.cohort.size} patients,
{len(protocol.arms)} arms, {len(protocol.schedule.times_h)} times, {protocol.sampling.samples_per_patient} samples each,
sampler <code>{protocol.sampling.sampler}</code>.</p>
<h2>Time course</h2><img src="data:image/png;base64,{img}" alt="time course">
<h2>Per-arm peak</h2>{table}
</body></html>"""
    path = Path(out) / "report.html"
    path.write_text(page)
    return path
