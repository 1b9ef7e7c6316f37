"""Commands of mgr.train: synth, check-data, train, evaluate, report, bench train."""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .clikit import JSON_OPT, device_option, err, fail, out as stdout, split_file_option, user_errors


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err)


def synth(ctx: typer.Context,
          out: Path = typer.Argument(..., help="Folder to write the synthetic dataset into."),
          clips: int = typer.Option(320, help="Trimmed set only: number of clips (spread over the 32 classes)."),
          seed: int = typer.Option(0, help="Random seed."),
          max_frames: int = typer.Option(12, help="Trimmed set only: longest clip, in frames."),
          untrimmed: bool = typer.Option(False, help="Write untrimmed videos in the official layout (labels.csv, "
                                         "videos/, skeleton/ for every frame, protocol.json) instead of clips."),
          videos: int = typer.Option(40, help="Untrimmed set only: number of videos (25-45 s each).")) -> None:
    """Generate synthetic iMiGUE (layout 1 + OpenPose JSON, or --untrimmed: layout 3). It is NOT real data."""
    from .synth import SynthConfig, UntrimmedConfig, generate, generate_untrimmed
    given = {n for n in ("clips", "max_frames", "videos")
             if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"}
    ignored = sorted(given & ({"clips", "max_frames"} if untrimmed else {"videos"}))
    if ignored:
        err.print(f"[yellow]ignored for the {'untrimmed' if untrimmed else 'trimmed'} set: "
                  f"{', '.join('--' + n.replace('_', '-') for n in ignored)}[/]")
    with user_errors(), _progress() as p:
        task = p.add_task("synth", total=videos if untrimmed else clips, info="")
        tick = lambda d, t: p.update(task, completed=d)  # noqa: E731
        if untrimmed:
            generate_untrimmed(out, UntrimmedConfig(videos=videos, seed=seed), progress=tick)
        else:
            generate(out, SynthConfig(clips=clips, seed=seed, max_frames=max_frames), progress=tick)
    if untrimmed:
        with open(out / "labels.csv", newline="") as fh:
            intervals = sum(1 for _ in fh) - 1
        stdout.print(f"wrote {videos} [yellow]synthetic[/yellow] untrimmed videos with {intervals} labelled intervals "
                     f"to {out} (official layout; see {out}/README.md)")
    else:
        stdout.print(f"wrote {clips} [yellow]synthetic[/yellow] clips to {out} (see {out}/README.md)")


def check_data(path: Path = typer.Argument(..., help="Dataset folder (any supported layout)."),
               keypoints: Optional[Path] = typer.Option(None, help="Parallel keypoint tree."),
               decode: bool = typer.Option(False, help="Decode every image fully (slower, finds more)."),
               show: int = typer.Option(10, help="How many problem lines to print per kind, and video rows of the "
                                        "background table (official layout).")) -> None:
    """Report layout, clips per class, frames per clip and every missing or corrupt file; in the official layout
    also each video's background (frames outside every labelled interval) and the overlapping intervals."""
    from .checkdata import check_dataset
    from .classes import imigue_classes
    with user_errors(), _progress() as p:      # DatasetError is a ValueError
        task = p.add_task("check", total=None, info="")
        rep = check_dataset(str(path), str(keypoints) if keypoints else None, decode,
                            progress=lambda d, t: p.update(task, completed=d, total=t))
    t = Table(title=f"{path}: layout {rep.layout}, {sum(rep.clips_per_class.values())} clips")
    for col in ("id", "class", "clips"):
        t.add_column(col)
    for c in imigue_classes():
        n = rep.clips_per_class.get(c.index, 0)
        t.add_row(str(c.id), c.name, str(n) if n else "[red]0[/red]")
    stdout.print(t)
    fs = rep.frame_stats()
    s = Table(title="health")
    s.add_column("check")
    s.add_column("result")
    s.add_row("frames per clip (min / median / max)", f"{fs['min']} / {fs['median']:.0f} / {fs['max']}")
    s.add_row("layout problems", str(len(rep.problems)))
    s.add_row("unreadable images", str(len(rep.unreadable_images)))
    s.add_row("video problems (official layout)", str(len(rep.video_problems)))
    s.add_row("keypoint files checked", str(rep.frames_checked))
    s.add_row("keypoint files missing", str(rep.missing_keypoints))
    s.add_row("keypoint files corrupt", str(len(rep.corrupt_keypoints)))
    s.add_row("frames without a person (incl. missing)", str(rep.frames_without_person))
    if rep.layout == "official":
        tot = rep.background_totals()
        s.add_row("interval problems (overlaps, past the end)", str(len(rep.interval_problems)))
        s.add_row("background (no labelled interval)", f"{tot['background_s']:.1f} s in {tot['videos']} videos")
        s.add_row("videos lacking skeletons in their gaps", str(tot["videos_lacking_skeleton"]))
    stdout.print(s)
    if rep.layout == "official":
        # the videos that cannot give background clips first, worst first; then the rest in label-file order
        rows = sorted(rep.background, key=lambda b: -b.lacking_skeleton)
        b = Table(title=f"background per video ({min(show, len(rows))} of {len(rows)} shown): "
                        f"{tot['background_s']:.1f} s, {tot['frames_lacking_skeleton']} gap frames without a skeleton "
                        f"in {tot['videos_lacking_skeleton']} videos")
        for col in ("video", "subject", "frames", "intervals", "background s", "gap frames lacking JSON"):
            b.add_column(col)
        for r in rows[:show]:
            miss = f"[red]{r.lacking_skeleton}[/red]" if r.lacking_skeleton else "0"
            frames = str(r.num_frames) if r.num_frames is not None else "[yellow]unknown[/]"
            b.add_row(r.video_id, str(r.subject), frames, str(r.clips), f"{r.background_s:.1f}", f"{miss} of {r.gap_frames}")
        stdout.print(b)
    for title, lines in (("layout", rep.problems), ("images", rep.unreadable_images),
                         ("keypoints", rep.corrupt_keypoints), ("videos", rep.video_problems),
                         ("intervals", rep.interval_problems)):
        for line in lines[:show]:
            stdout.print(f"[yellow]{title}:[/yellow] {line}")
        if len(lines) > show:
            stdout.print(f"[yellow]{title}:[/yellow] ... and {len(lines) - show} more")


def _train_callback(p: Progress, state: dict):
    def cb(kind: str, d: dict) -> None:
        if kind == "info":
            color = "red" if "RANDOM" in d["weights"] else "green"
            p.console.print(f"layout {d['layout']}: {d['train_clips']} train / {d['val_clips']} val clips; "
                            f"RGB weights: [{color}]{d['weights']}[/{color}]")
            for line in d["problems"][:5]:
                p.console.print(f"[yellow]data:[/yellow] {line}")
        elif kind == "step":
            if state.get("epoch") != d["epoch"]:
                state["epoch"] = d["epoch"]
                state["task"] = p.add_task(f"epoch {d['epoch'] + 1}", total=d["steps"], info="")
            p.update(state["task"], completed=d["step"],
                     info=f"loss {d['loss']:.3f}  {d['clips_per_s']:.1f} clips/s")
        elif kind == "epoch":
            val = f"val top-1 {100 * d['val_top1']:.1f}%  top-5 {100 * d['val_top5']:.1f}%" if "val_top1" in d else "no val clips"
            p.console.print(f"epoch {d['epoch'] + 1}: train loss {d['train_loss']:.3f}  top-1 "
                            f"{100 * d['train_top1']:.1f}%  top-5 {100 * d['train_top5']:.1f}%  {val}  "
                            f"({d['train_clips_per_s']:.1f} clips/s)")
    return cb


def train(ctx: typer.Context,
          data: Optional[Path] = typer.Argument(None, help="Dataset folder (not needed with --resume)."),
          out: Optional[Path] = typer.Option(None, help="Run folder (default runs/<modality>)."),
          modality: str = typer.Option("fusion", help="fusion | rgb | skeleton."),
          epochs: int = typer.Option(20), batch_size: int = typer.Option(16, help="Clips per step (per process)."),
          lr: float = typer.Option(3e-4), weight_decay: float = typer.Option(5e-4),
          label_smoothing: float = typer.Option(0.0), class_weights: bool = typer.Option(False, help="Inverse-frequency loss weights."),
          balanced_sampler: bool = typer.Option(False, help="Sample clips inversely to class frequency "
                                                "(one process only; refused under torchrun)."),
          amp: bool = typer.Option(False, help="Mixed precision (CUDA)."), workers: int = typer.Option(2),
          seed: int = typer.Option(0), split: str = typer.Option("random", help="random | cross-subject."),
          protocol: Optional[Path] = typer.Option(None, help="Cross-subject protocol JSON (default: the official "
                                                  "iMiGUE one shipped with mgr)."),
          val_fraction: float = typer.Option(0.1, help="Cross-subject only: share of the train subjects' clips held "
                                             "out for validation. 0 trains on all of them (13,935 iMiGUE clips, as "
                                             "published results do), with no validation: best.pt is the last epoch."),
          split_file: Optional[Path] = split_file_option("a new split as --split and --seed say"),
          keypoints: Optional[Path] = typer.Option(None, help="Parallel OpenPose keypoint tree."),
          pretrained: Optional[Path] = typer.Option(None, help="torchvision resnet18 ImageNet state_dict."),
          download: bool = typer.Option(True, help="Try torchvision's ImageNet download without --pretrained."),
          freeze_backbone: bool = typer.Option(False, help="Keep the ResNet18 encoder fixed."),
          cache_frames: Optional[Path] = typer.Option(None, help="Cache decoded, resized frames here."),
          device: str = device_option("auto"),
          background: bool = typer.Option(False, help="Add a learned 'no gesture' class (index 32), cut from the "
                                          "frames between labelled intervals (official layout only)."),
          background_clips: Optional[int] = typer.Option(None, help="With --background: how many 'no gesture' "
                                                         "clips (default: a quarter of the labelled clips)."),
          resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this folder.")) -> None:
    """Train the fusion model or an ablation (reference report defaults). Works under torchrun."""
    from .fit import TrainConfig, fit
    from .registry import record_model
    if resume is not None:
        cfg_file = resume / "train_config.json"
        if not cfg_file.exists():
            raise fail(f"{resume}: nothing to resume (no train_config.json)")
        try:
            saved = json.loads(cfg_file.read_text())
            data, keypoints = Path(saved.pop("data")), saved.pop("keypoints", None)
            names = {f.name for f in fields(TrainConfig)}
            saved["reference_size"] = tuple(saved["reference_size"])
            cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names})
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise fail(f"{cfg_file}: not a readable training configuration ({e})") from e
        out = resume
        given = [name for name in ctx.params if name != "resume"      # typed on the command line, not defaults
                 and getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
        if given:
            flags = ", ".join("DATA" if n == "data" else "--" + n.replace("_", "-") for n in given)
            err.print(f"[yellow]--resume continues the run with its saved configuration ({cfg_file}); "
                      f"ignored: {escape(flags)}[/]", soft_wrap=True)
    else:
        if data is None:
            raise fail("give a dataset folder, or --resume RUN/")
        cfg = TrainConfig(modality=modality, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                          label_smoothing=label_smoothing, class_weights=class_weights,
                          balanced_sampler=balanced_sampler, amp=amp, workers=workers, seed=seed, split=split,
                          protocol=str(protocol) if protocol else None, val_fraction=val_fraction, pretrained=str(pretrained) if pretrained else None,
                          allow_download=download, freeze_backbone=freeze_backbone,
                          cache_dir=str(cache_frames) if cache_frames else None, device=device,
                          background=background, background_clips=background_clips)
        out = out or Path("runs") / modality
    try:
        with user_errors(FloatingPointError), _progress() as p:   # CheckpointError and DatasetError are ValueErrors
            result = fit(str(data), out, cfg, str(keypoints) if keypoints else None, resume=resume is not None,
                         split_file=str(split_file) if split_file else None, callback=_train_callback(p, {}))
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted.[/yellow] The last finished epoch is in {out}/last.pt; "
                  f"continue with: mgr train --resume {out}")
        raise typer.Exit(130)
    if os.environ.get("RANK", "0") != "0":      # under torchrun only rank 0 reports and records
        return
    record_model(Path(out) / "best.pt", "train")
    best = (f"best val top-1 {100 * result['best_val_top1']:.1f}% at epoch {result['best_epoch'] + 1}"
            if result["best_val_top1"] is not None else f"no validation clips: best.pt is the last epoch "
                                                         f"({result['best_epoch'] + 1})")
    stdout.print(f"{best}; checkpoints in {out} (best.pt, last.pt). Next: mgr evaluate {out}/best.pt {data}")


def evaluate(checkpoint: Path = typer.Argument(..., help="A checkpoint (.pt), e.g. RUN/best.pt."),
             data: Path = typer.Argument(..., help="Dataset folder."),
             split: str = typer.Option("test", help="train | val | test | all."),
             split_file: Optional[Path] = split_file_option("split.json beside the checkpoint"),
             new_split: bool = typer.Option(False, help="Without a split file, make a new seeded random split "
                                            "(its test part is NOT the run's test part)."),
             keypoints: Optional[Path] = typer.Option(None), out: Optional[Path] = typer.Option(None, help="Output folder."),
             batch_size: int = typer.Option(16, help="Clips per forward pass."),
             workers: int = typer.Option(2), device: str = device_option("auto")) -> None:
    """Top-1, top-5, mean per-class accuracy, per-class table, confusion matrix PNG and JSON."""
    from .run_eval import evaluate_checkpoint
    with user_errors():                         # CheckpointError is a ValueError
        m = evaluate_checkpoint(str(checkpoint), str(data), split, str(out) if out else None,
                                str(keypoints) if keypoints else None, str(split_file) if split_file else None,
                                batch_size=batch_size, workers=workers, device=device, new_split=new_split)
    t = Table(title=f"{m['modality']} on {split}: {m['clips']} clips")
    for col in ("id", "class", "support", "accuracy"):
        t.add_column(col)
    for c in sorted(m["per_class"], key=lambda c: -c["support"]):
        t.add_row(str(c["index"] + 1), c["name"], str(c["support"]),
                  f"{100 * c['accuracy']:.1f}%" if c["accuracy"] is not None else "[dim]no samples[/dim]")
    stdout.print(t)
    pct = lambda v: f"{100 * v:.2f}%" if v is not None else "n/a"  # noqa: E731
    stdout.print(f"top-1 {pct(m['top1'])}  top-5 {pct(m['top5'])}  mean class accuracy {pct(m['mean_class_accuracy'])}"
                 f"  (split: {m['split_source']})")
    stdout.print(f"wrote {(out or checkpoint.parent)}/eval_{split}.json and confusion_{split}.png")


def report(runs: list[Path] = typer.Argument(..., help="Run folders, e.g. runs/rgb runs/skeleton runs/fusion."),
           out: Path = typer.Option(Path("report"), help="Output folder.")) -> None:
    """Table 1 (markdown), accuracy/loss curves (train dashed, val solid) and one HTML page for your runs."""
    from .report import plot_curves, read_run, table1_markdown, table1_rows, write_html
    with user_errors():
        loaded = [read_run(r) for r in runs]
    md = table1_markdown(table1_rows(loaded))
    out.mkdir(parents=True, exist_ok=True)
    (out / "table1.md").write_text(md)
    plots = plot_curves(loaded, out)
    page = write_html(loaded, out / "report.html")
    stdout.print(md)
    stdout.print(f"wrote {out}/table1.md, {page}, " + ", ".join(str(p) for p in plots))


def bench_train(data: Optional[Path] = typer.Argument(None, help="Dataset (default: a fresh synthetic set)."),
                modality: list[str] = typer.Option(["skeleton", "rgb", "fusion"], help="Modalities to time."),
                steps: int = typer.Option(4, help="Steps per epoch."), batch_size: int = typer.Option(8),
                workers: int = typer.Option(2), epochs: int = typer.Option(3),
                json_out: Optional[Path] = JSON_OPT) -> None:
    """Training throughput in clips/s per modality, with and without the decoded-frame cache."""
    import tempfile
    from .bench import bench_loader, bench_train as run
    from .machine import machine_info
    from .synth import SynthConfig, generate
    tmp = None
    if data is None:
        tmp = Path(tempfile.mkdtemp(prefix="mgr-bench-data-"))
        data = generate(tmp / "synth", SynthConfig(clips=max(96, 2 * steps * batch_size)))
    res = run(str(data), modality, steps, batch_size, workers, epochs)
    loader = bench_loader(str(data), max(4, steps), batch_size, workers, epochs)
    t = Table(title=f"training throughput ({machine_info()['cpu']}, {machine_info()['torch_threads']} threads)")
    for col in ("modality", "frame cache", "clips/s (median)", "per epoch"):
        t.add_column(col)
    for r in res:
        t.add_row(r["modality"], "yes" if r["frame_cache"] else "no", f"{r['clips_per_s_median']:.1f}",
                  " ".join(f"{v:.1f}" for v in r["clips_per_s_all"]))
    for r in loader:
        t.add_row("data pipeline only (RGB)", "yes" if r["frame_cache"] else "no", f"{r['clips_per_s_median']:.1f}",
                  " ".join(f"{v:.1f}" for v in r["clips_per_s_all"]))
    stdout.print(t)
    if json_out:
        json_out.write_text(json.dumps({"machine": machine_info(), "results": res, "data_pipeline": loader}, indent=2))
    if tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(synth)
    app.command("check-data")(check_data)
    app.command()(train)
    app.command()(evaluate)
    app.command()(report)
    bench_app.command("train")(bench_train)
