"""`mgr demo`: the whole product on synthetic data, on a CPU, in a few minutes.

Steps: synthetic iMiGUE -> train the fusion model briefly -> evaluate -> export ONNX (FP32
and INT8) -> benchmark them -> replay a short video of a real person through the live
loop. Every step writes into one folder and is skipped on a second run when its output
is there (``fresh`` redoes everything). The data is synthetic: the accuracy says nothing
about iMiGUE.

The demo is the one realtime module that drives training (``mgr.train.fit``), lazily,
inside its steps: it orchestrates the whole product. The live loop itself (pipeline,
runner, sources, pose) reads models only through an engines backend; a test holds it to that.
"""
from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from mgr.train.atomic import atomic_write, atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("mgr-demo")     # everything goes here
    clips: int = 512                 # synthetic clips (16 per class)
    epochs: int = 10                 # brief CPU training
    lr: float = 3e-3                 # higher than the report's 3e-4: few steps, frozen encoder
    fresh: bool = False              # redo every step
    video_seconds: float = 6.0       # length of the generated replay video
    pose_model: str | None = None    # --pose-model; else MGR_POSE_MODEL, else cache/download
    bench_seconds: float = 3.0       # time bound per benchmark measurement


Step = Callable[[str, str], None]   # report(step name, message)


def demo_video(path: Path, seconds: float = 6.0, fps: float = 15.0, size: tuple[int, int] = (640, 360)) -> Path:
    """A short 16:9 video of a real person (public-domain astronaut photo), slowly panned and zoomed."""
    data = resources.files("mgr.realtime").joinpath("assets/astronaut.jpg").read_bytes()
    photo = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = photo.shape[:2]
    canvas = np.full((h, int(h * size[0] / size[1]), 3), 40, np.uint8)    # 16:9 canvas, photo centred
    x0 = (canvas.shape[1] - w) // 2
    canvas[:, x0:x0 + w] = photo
    n = int(seconds * fps)

    def write(tmp: str) -> None:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise RuntimeError(f"{path}: OpenCV cannot write mp4 here")
        try:
            for i in range(n):
                u = i / max(1, n - 1)
                zoom = 1.0 + 0.15 * np.sin(np.pi * u)                  # in and out again
                cw, ch = canvas.shape[1] / zoom, canvas.shape[0] / zoom
                cx = canvas.shape[1] / 2 + 20 * np.sin(2 * np.pi * u)   # a gentle sway
                crop = canvas[int((canvas.shape[0] - ch) / 2):int((canvas.shape[0] + ch) / 2),
                              int(cx - cw / 2):int(cx + cw / 2)]
                writer.write(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
        finally:
            writer.release()
    return atomic_write(path, write, suffix=".tmp" + path.suffix)   # OpenCV picks the container by extension


def _done(path: Path, fresh: bool) -> bool:
    return path.exists() and not fresh


def step_data(cfg: DemoConfig, events) -> Path:
    from mgr.train.synth import SynthConfig, generate
    data = cfg.out / "data"
    if _done(data / "README.md", cfg.fresh):
        events("skip", {"step": "synthetic data", "path": str(data)})
        return data
    shutil.rmtree(data, ignore_errors=True)
    generate(data, SynthConfig(clips=cfg.clips, max_frames=6), progress=lambda d, t: events("progress", {"step": "synth", "done": d, "total": t}))
    return data


def step_train(cfg: DemoConfig, data: Path, events) -> Path:
    from mgr.train.fit import TrainConfig, fit
    from mgr.train.registry import record_model
    run = cfg.out / "run"
    best = run / "best.pt"
    log_rows = (run / "log.jsonl").read_text().splitlines() if (run / "log.jsonl").exists() else []
    if _done(best, cfg.fresh) and len(log_rows) >= cfg.epochs:
        events("skip", {"step": "training", "path": str(best)})
        return best
    resume = (run / "last.pt").exists() and not cfg.fresh
    if cfg.fresh:
        shutil.rmtree(run, ignore_errors=True)
    tcfg = TrainConfig(modality="fusion", epochs=cfg.epochs, lr=cfg.lr, freeze_backbone=True, workers=2,
                       device="cpu", allow_download=False, seed=0)
    fit(str(data), run, tcfg, resume=resume, callback=lambda k, d: events(f"train-{k}", d))
    record_model(best, "demo")
    return best


def step_evaluate(cfg: DemoConfig, best: Path, data: Path) -> dict:
    from mgr.train.run_eval import evaluate_checkpoint
    path = best.parent / "eval_test.json"
    if _done(path, cfg.fresh) and path.stat().st_mtime >= best.stat().st_mtime:
        return json.loads(path.read_text())
    return evaluate_checkpoint(str(best), str(data), "test", workers=2)


def step_export(cfg: DemoConfig, best: Path, data: Path) -> dict[str, Path]:
    from mgr.engines.clip_data import ClipSource, dataset_calibration
    from mgr.engines.export import export_onnx
    from mgr.train.checkpoint import read_checkpoint
    out = {"fp32": cfg.out / "onnx" / "model.onnx", "int8": cfg.out / "onnx-int8" / "model.onnx"}
    meta = read_checkpoint(best)["metadata"]
    for precision, path in out.items():
        if _done(path, cfg.fresh) and path.stat().st_mtime >= best.stat().st_mtime:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        calib = None
        if precision == "int8":
            calib = dataset_calibration(ClipSource(data, part="train", split_file=best.parent / "split.json",
                                                   max_clips=32), meta)
        export_onnx(best, path, precision=precision, calib=calib)
    return out


def step_bench(cfg: DemoConfig, models: list[Path], data: Path, best: Path) -> dict:
    from mgr.engines.bench import BenchConfig, run_bench, write_report
    from mgr.engines.clip_data import ClipSource
    path = cfg.out / "bench.json"
    if _done(path, cfg.fresh) and path.stat().st_mtime >= max(m.stat().st_mtime for m in models):
        return json.loads(path.read_text())
    report = run_bench(models, threads=None, cfg=BenchConfig(iters=30, max_seconds=cfg.bench_seconds, clip_batches=(8,)),
                       data=ClipSource(data, part="test", split_file=best.parent / "split.json"))
    write_report(report, path)
    return report


def step_report(cfg: DemoConfig, best: Path, events) -> Path:
    """The HTML report of the demo's run (`mgr report RUN`): Table 1 row, curves, confusion matrix, environment."""
    from mgr.train.report import read_run, write_html
    page = cfg.out / "report.html"
    evaluation = best.parent / "eval_test.json"
    if _done(page, cfg.fresh) and page.stat().st_mtime >= evaluation.stat().st_mtime:
        events("skip", {"step": "report", "path": str(page)})
        return page
    return write_html([read_run(best.parent)], page)


def step_replay(cfg: DemoConfig, model: Path, events) -> dict:
    """Replay the generated video through the live loop: annotated mp4 + JSONL. Needs a pose model."""
    from .outputs import JsonlSink, VideoSink
    from .pipeline import LiveConfig
    from .posemodel import resolve_pose_model
    from .runner import Outputs, open_recognizer, run_replay
    from .sources import VideoFileSource

    pose_path = resolve_pose_model(cfg.pose_model)       # PoseModelError (with what to do) when offline
    video = demo_video(cfg.out / "input.mp4", cfg.video_seconds) if not _done(cfg.out / "input.mp4", cfg.fresh) \
        else cfg.out / "input.mp4"
    record = cfg.out / "replay.json"
    if (_done(record, cfg.fresh) and (cfg.out / "replay.mp4").exists()
            and record.stat().st_mtime >= max(model.stat().st_mtime, video.stat().st_mtime)):
        events("skip", {"step": "replay", "path": str(cfg.out / "replay.mp4")})
        return json.loads(record.read_text())
    live_cfg = LiveConfig(inference_fps=None)
    source = VideoFileSource(video)
    try:
        with open_recognizer(model, pose_path, 1, 1, live_cfg) as recognizer:
            outputs = Outputs(VideoSink(cfg.out / "replay.mp4", source.fps or 15.0, source.size),
                              JsonlSink(cfg.out / "replay.jsonl"), False)
            summary = run_replay(source, recognizer, live_cfg, outputs,
                                 on_frame=lambda i: events("progress", {"step": "replay", "done": i + 1,
                                                                       "total": source.frame_count}))
    finally:
        source.close()
    result = {"video": str(video), "annotated": str(cfg.out / "replay.mp4"), "jsonl": str(cfg.out / "replay.jsonl"),
              "pose_model": str(pose_path), **summary.to_dict()}
    if not summary.interrupted:
        atomic_write_json(record, result, indent=2)
    return result


# ----------------------------------------------------------------------------- CLI rendering
def run_demo_cli(cfg: DemoConfig) -> dict:
    """Run every step with rich progress and print the summary. The only printing part of this module."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from mgr.train.clikit import err, out as console      # results on stdout; progress, notes on stderr

    from .posemodel import PoseModelError

    from mgr.engines.cli import NOISY_LOGGERS
    for name in NOISY_LOGGERS:                  # exporter and quantizer log every pass at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    console.rule("[bold]mgr demo[/bold]: SYNTHETIC data; the accuracy below says nothing about iMiGUE")
    cfg.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err) as p:
        tasks: dict[str, int] = {}

        def events(kind: str, d: dict) -> None:
            if kind == "skip":
                p.console.print(f"reusing {d['step']}: {d['path']} (--fresh redoes it)")
            elif kind == "progress":
                if d["step"] not in tasks:
                    tasks[d["step"]] = p.add_task(d["step"], total=d["total"], info="")
                p.update(tasks[d["step"]], completed=d["done"])
            elif kind == "train-step":
                key = f"train epoch {d['epoch'] + 1}/{cfg.epochs}"
                if key not in tasks:
                    tasks[key] = p.add_task(key, total=d["steps"], info="")
                p.update(tasks[key], completed=d["step"], info=f"loss {d['loss']:.3f}")
            elif kind == "train-epoch" and "val_top1" in d:
                p.console.print(f"epoch {d['epoch'] + 1}: val top-1 {100 * d['val_top1']:.1f}%")

        @contextmanager
        def stage(name: str):
            """A step without natural progress units: a pulsing bar, then done."""
            task = p.add_task(name, total=None, info="")
            yield
            p.update(task, total=1, completed=1)

        data = step_data(cfg, events)
        best = step_train(cfg, data, events)
        with stage("evaluate (test split)"):
            results["evaluate"] = step_evaluate(cfg, best, data)
        console.print(_eval_table(results["evaluate"], best, Table))
        with stage("export ONNX FP32 + INT8 (calibrated)"):
            onnx = step_export(cfg, best, data)
        from mgr.train.registry import record_model
        record_model(onnx["fp32"], "demo")       # `mgr live` without --model takes the fast ONNX graph
        p.console.print(f"exported {onnx['fp32']} and {onnx['int8']}")
        with stage("benchmark torch / ONNX FP32 / ONNX INT8"):
            results["bench"] = step_bench(cfg, [best, onnx["fp32"], onnx["int8"]], data, best)
        with stage("report (report.html)"):
            results["report"] = step_report(cfg, best, events)
        try:
            results["replay"] = step_replay(cfg, onnx["fp32"], events)
        except PoseModelError as e:
            results["replay"] = None
            p.console.print(f"[yellow]replay skipped:[/yellow] {escape(str(e))}", soft_wrap=True)
    _print_demo_summary(console, cfg, best, results, Table)
    return results


def _eval_table(ev: dict, best: Path, Table):
    t = Table(title=f"evaluation of {best} on the test split (SYNTHETIC)")
    for col in ("clips", "top-1", "top-5", "mean per-class", "confusion matrix"):
        t.add_column(col, overflow="fold")
    mca = ev.get("mean_class_accuracy")
    t.add_row(str(ev.get("clips", "")), f"{100 * ev['top1']:.1f}%", f"{100 * ev['top5']:.1f}%",
              f"{100 * mca:.1f}%" if mca is not None else "n/a", str(best.parent / "confusion_test.png"))
    return t


def _print_demo_summary(console, cfg: DemoConfig, best: Path, results: dict, Table) -> None:
    ev = results["evaluate"]
    t = Table(title="mgr demo: what was made (SYNTHETIC data)")
    t.add_column("what")
    t.add_column("where", overflow="fold")
    t.add_column("headline")
    t.add_row("synthetic iMiGUE", str(cfg.out / "data"), f"{cfg.clips} clips, 32 classes")
    t.add_row("fusion model", str(best), f"test top-1 {100 * ev['top1']:.1f}%, top-5 {100 * ev['top5']:.1f}% (chance 3.1%)")
    t.add_row("evaluation", str(best.parent / "eval_test.json"), f"confusion matrix: {best.parent / 'confusion_test.png'}")
    for r in results["bench"]["results"]:
        enc = r.get("encoder_b1", {}).get("p50_ms")
        acc = r.get("accuracy", {}).get("top1")
        name = f"{r['runtime']} {r['precision']}"
        t.add_row(f"bench: {name}", str(r["model"]),
                  (f"encoder p50 {enc:.1f} ms, " if enc else "") + f"stream step x{r['stream_speedup']:.1f} cached"
                  + (f", test top-1 {100 * acc:.1f}%" if acc is not None else ""))
    t.add_row("report", str(results["report"]), "Table 1 row, training curves, confusion matrix, per-class table")
    rp = results.get("replay")
    if rp:
        t.add_row("replay", rp["annotated"], f"{rp['frames']} frames, person in {rp['steps_with_person']} steps; {rp['jsonl']}")
    else:
        t.add_row("replay", "skipped", "no pose model: --pose-model PATH or MGR_POSE_MODEL=PATH")
    console.print(t)
    console.print("Next: [bold]mgr live --camera 0[/bold] uses this model; [bold]mgr train DATA[/bold] trains on your iMiGUE copy.")
