"""Table 1 of the reference report for the user's own runs, and their training curves."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

from .atomic import atomic_write_text


def read_run(run: str | os.PathLike) -> dict:
    """A run folder's log rows, final test evaluation (if any) and metadata summary."""
    run = Path(run)
    log_file = run / "log.jsonl"
    if not log_file.exists():
        raise ValueError(f"{run}: not a training run (no log.jsonl)")
    rows = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    evals = {p.stem.removeprefix("eval_"): json.loads(p.read_text()) for p in run.glob("eval_*.json")}
    modality = None
    cfg_file = run / "train_config.json"
    if cfg_file.exists():
        modality = json.loads(cfg_file.read_text()).get("modality")
    return {"run": str(run), "name": run.name, "modality": modality, "log": rows, "evals": evals}


def _fmt(v, pct=True) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.1f}"


def best_epoch_row(log: list[dict]) -> dict | None:
    """The epoch best.pt was saved at: the first highest val top-1 (fit's rule); without
    validation, the last epoch."""
    with_val = [x for x in log if x.get("val_top1") is not None]
    if not with_val:
        return log[-1] if log else None
    return max(with_val, key=lambda x: (x["val_top1"], -x["epoch"]))


def _mean(values: list) -> float | None:
    """Mean of the values present; None (shown n/a) when there are none, never 0."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def table1_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        ev = r["evals"].get("test") or r["evals"].get("val") or {}
        log = r["log"]
        best = best_epoch_row(log) or {}
        part = "test" if "test" in r["evals"] else ("val" if ev else
                                                     f"val (best epoch {best['epoch'] + 1})" if "val_top1" in best
                                                     else "no validation")
        rows.append({
            "run": r["name"], "modality": r["modality"] or "?", "split": part,
            "top1": ev.get("top1", best.get("val_top1")), "top5": ev.get("top5", best.get("val_top5")),
            "mean_class_accuracy": ev.get("mean_class_accuracy", best.get("val_mean_class_accuracy")),
            "train_s_per_epoch": _mean([x.get("train_seconds") for x in log]),
            "eval_s_per_epoch": _mean([x.get("eval_seconds") for x in log]),
        })
    return rows


def table1_markdown(rows: list[dict]) -> str:
    lines = ["| Run | Modality | Split | Top-1 (%) | Top-5 (%) | Mean class acc. (%) | Train s/epoch | Eval s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['modality']} | {r['split']} | {_fmt(r['top1'])} | {_fmt(r['top5'])} | "
                     f"{_fmt(r['mean_class_accuracy'])} | {_fmt(r['train_s_per_epoch'], False)} | "
                     f"{_fmt(r['eval_s_per_epoch'], False)} |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[dict], out: str | os.PathLike) -> list[Path]:
    """accuracy.png and loss.png: train dashed, val solid, one colour per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, ylabel in (("top1", "top-1 accuracy"), ("loss", "cross-entropy loss")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, r in enumerate(runs):
            ep = [x["epoch"] + 1 for x in r["log"]]
            color = f"C{i}"
            ax.plot(ep, [x.get(f"train_{metric}") for x in r["log"]], "--", color=color, label=f"{r['name']} train")
            if any(f"val_{metric}" in x for x in r["log"]):
                ax.plot(ep, [x.get(f"val_{metric}") for x in r["log"]], "-", color=color, label=f"{r['name']} val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / f"{'accuracy' if metric == 'top1' else 'loss'}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _img_tag(path: Path, alt: str) -> str:
    import base64
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pct(v) -> str:
    return "no samples" if v is None else f"{100 * v:.1f}"


def _per_class_html(ev: dict) -> str:
    rows = sorted(ev.get("per_class", []), key=lambda c: -c["support"])
    body = "".join(f"<tr><td>{c['index'] + 1}</td><td>{html.escape(c['name'])}</td><td>{c['support']}</td>"
                   f"<td>{_pct(c['accuracy'])}</td></tr>" for c in rows)
    return "<table><tr><th>id</th><th>class</th><th>support</th><th>accuracy (%)</th></tr>" + body + "</table>"


def _markdown_table_html(rows: list[dict]) -> str:
    head = ("<tr><th>run</th><th>modality</th><th>split</th><th>top-1 (%)</th><th>top-5 (%)</th>"
            "<th>mean class acc. (%)</th><th>train s/epoch</th><th>eval s/epoch</th></tr>")
    body = "".join(f"<tr><td>{html.escape(r['run'])}</td><td>{r['modality']}</td><td>{r['split']}</td>"
                   f"<td>{_fmt(r['top1'])}</td><td>{_fmt(r['top5'])}</td><td>{_fmt(r['mean_class_accuracy'])}</td>"
                   f"<td>{_fmt(r['train_s_per_epoch'], False)}</td><td>{_fmt(r['eval_s_per_epoch'], False)}</td></tr>"
                   for r in rows)
    return f"<table>{head}{body}</table>"


CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
       "img{max-width:100%;border:1px solid #ddd}pre{background:#f4f4f4;padding:8px}")


def write_html(runs: list[dict], out: str | os.PathLike) -> Path:
    """One self-contained page (images inlined): Table 1, curves, confusion matrices, per-class tables,
    and the environment each run had."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import shutil
    fig_dir = out.parent / f".{out.stem}-figs"
    figs = plot_curves(runs, fig_dir)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mgr report</title><style>{CSS}</style>"
             "</head><body><h1>mgr report</h1>", "<h2>Table 1</h2>", _markdown_table_html(table1_rows(runs)),
             "<h2>Curves</h2><p>train dashed, validation solid</p>", *(_img_tag(f, f.stem) for f in figs)]
    shutil.rmtree(fig_dir, ignore_errors=True)          # inlined: the page stands alone
    for r in runs:
        run = Path(r["run"])
        parts.append(f"<h2>{html.escape(r['name'])}</h2>")
        for part, ev in r["evals"].items():
            cm = run / f"confusion_{part}.png"
            parts.append(f"<h3>{part}: {ev.get('clips', 0)} clips</h3>")
            if cm.exists():
                parts.append(_img_tag(cm, f"confusion matrix {r['name']} {part}"))
            parts.append(_per_class_html(ev))
        env = run / "environment.json"
        if env.exists():
            parts.append(f"<h3>environment</h3><pre>{html.escape(env.read_text())}</pre>")
    parts.append("</body></html>")
    return atomic_write_text(out, "\n".join(parts))
