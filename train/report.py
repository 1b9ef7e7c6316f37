"""Table 1 of the reference report for the user's own runs, and their training curves."""
from __future__ import annotations

import json
import os
from pathlib import Path


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


def table1_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        ev = r["evals"].get("test") or r["evals"].get("val") or {}
        log = r["log"]
        part = "test" if "test" in r["evals"] else ("val" if ev else "val (last epoch)")
        last = log[-1] if log else {}
        rows.append({
            "run": r["name"], "modality": r["modality"] or "?", "split": part,
            "top1": ev.get("top1", last.get("val_top1")), "top5": ev.get("top5", last.get("val_top5")),
            "mean_class_accuracy": ev.get("mean_class_accuracy", last.get("val_mean_class_accuracy")),
            "train_s_per_epoch": sum(x["train_seconds"] for x in log) / len(log) if log else None,
            "eval_s_per_epoch": (sum(x.get("eval_seconds", 0) for x in log) / len(log)) if log else None,
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
