"""CLI commands of this package, added to the `mgr` app by realtime.cli.

Only this module prints (rich). It builds the frozen configs from flags; the library below
never sees CLI arguments.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mgr.engines.backends import MissingRuntimeError
from mgr.train.clikit import JSON_OPT, POSE_MODEL_OPT, err, fail, out as stdout, threads_option, user_errors
from mgr.train.registry import latest_model

from .extract import ExtractConfig, plan_extract, run_extract
from .events import EventConfig
from .pipeline import STAGES, LiveConfig
from .pose import PoseConfig
from .posemodel import PoseModelError, resolve_pose_model
from .sinks import SinkError
from .sources import ImageFolderSource, SourceError, VideoFileSource, open_camera, open_stream

log = logging.getLogger(__name__)

# Beyond clikit's ValueError (artifact, checkpoint, dataset errors) and OSError (disk full, read-only,
# missing files): MissingRuntimeError is an .engine without tensorrt (or .onnx without onnxruntime).
REALTIME_USER_ERRORS = (SourceError, PoseModelError, MissingRuntimeError, SinkError)


def _resolve_model(model: Optional[Path]) -> Path:
    if model is not None:
        if not model.is_file():
            raise FileNotFoundError(f"model not found: {model}")
        return model
    newest = latest_model()
    if newest is None:
        raise FileNotFoundError("no model given and none made yet: pass --model PATH (.pt, .onnx, .engine), "
                                "or make one with `mgr demo` (synthetic data, a few minutes) or `mgr train`")
    err.print(f"using the newest model mgr made: [bold]{newest}[/] (choose another with --model)")
    return newest


def _recognizer(model: Optional[Path], pose_model: Optional[Path], num_poses: int, threads: int, cfg: LiveConfig):
    """Resolve the model and pose model as the CLI documents, then open the Recognizer (the Python API's)."""
    from .pipeline import Recognizer
    return Recognizer.from_artifact(_resolve_model(model), pose_model=resolve_pose_model(pose_model),
                                    num_poses=num_poses, threads=threads, config=cfg)


def _backend_and_pose(model: Optional[Path], pose_model: Optional[Path], num_poses: int, threads: int):
    """For runs that open several Recognizers (bench, soak): one loaded backend, shared, and a factory
    of fresh pose stages; each run hands both to runner.open_recognizer."""
    from mgr.engines.backends import load_backend

    from .pipeline import pose_stage_factory
    backend = load_backend(_resolve_model(model), device="cpu", threads=threads)
    return backend, pose_stage_factory(resolve_pose_model(pose_model), num_poses)


def _ms(value: float) -> str:
    """Milliseconds to one decimal, or three under 1 ms (the event decoder takes microseconds)."""
    return f"{value:.1f}" if value >= 1.0 else f"{value:.3f}"


def _print_summary(summary, title: str, console=None) -> None:
    console = console if console is not None else stdout
    table = Table(title=title)
    table.add_column("stage")
    for col in ("p50 ms", "p95 ms", "mean ms"):
        table.add_column(col, justify="right")
    for stage, p in summary.stage_ms.items():
        if p:
            table.add_row(stage, _ms(p["p50"]), _ms(p["p95"]), _ms(p["mean"]))
    if summary.latency_ms:
        lat = summary.latency_ms
        table.add_row("capture -> labels", f"{lat['p50']:.1f}", f"{lat['p95']:.1f}", f"{lat['mean']:.1f}")
    console.print(table)
    console.print(f"{summary.frames} frames at {summary.display_fps:.1f} fps, {summary.steps} inference steps "
                  f"at {summary.inference_fps:.1f}/s, person in {summary.steps_with_person}, "
                  f"dropped frames {summary.dropped}, frames encoded {summary.encoded_frames}, "
                  f"gesture events {summary.events}. Ended: {summary.end_reason}.")
    if summary.sinks:
        console.print("outputs: " + "; ".join(f"{name} sent {s['sent']}, dropped {s['dropped']}"
                                              for name, s in summary.sinks.items()))


def _check_outputs(save: Optional[Path], jsonl: Optional[Path], events: Optional[Path]) -> None:
    """Every output path, checked before a camera, video or model opens."""
    from .outputs import check_output_path
    for path, what in ((save, "annotated video"), (jsonl, "predictions"), (events, "event log")):
        if path is not None:
            check_output_path(path, what)


def _outputs(save: Optional[Path], jsonl: Optional[Path], fps: float, size, log_timings: bool, timed: bool = False,
             events: Optional[Path] = None, sinks: list | None = None, log_keypoints: bool = False):
    from .runner import file_outputs
    try:
        outputs = file_outputs(save, jsonl, events, fps, size, log_timings, timed)
    except BaseException:
        for sink in sinks or []:         # opened already: a file that cannot be made must not leave them open
            sink.close()
        raise
    outputs.sinks = list(sinks or [])
    outputs.log_keypoints = log_keypoints
    return outputs


class _SinkOptions:
    """The outputs to other programs a live or replay run asks for (README "Outputs to other programs")."""

    def __init__(self, lsl: Optional[str], osc: Optional[str], serve: Optional[str], serve_token: Optional[str],
                 stdout_json: bool):
        from .osc import parse_host_port
        self.lsl, self.stdout_json, self.token = lsl, stdout_json, serve_token
        # addresses are checked before anything loads
        self.osc = parse_host_port(osc, "--osc") if osc is not None else None
        self.serve = parse_host_port(serve, "--serve", "127.0.0.1") if serve is not None else None
        if serve_token is not None and serve is None:
            raise ValueError("--serve-token needs --serve [HOST:]PORT")

    @property
    def console(self):
        """Where results are printed: stderr when stdout carries the JSON lines."""
        return err if self.stdout_json else stdout

    def open(self, class_names: list[str], events: EventConfig, rate: float) -> list:
        """Open every asked-for sink (a bad port or host fails here, before the camera opens); close them on failure."""
        from .sinks import StdoutSink
        made = []
        try:
            if self.stdout_json:
                made.append(StdoutSink())
            if self.osc is not None:
                from .osc import OscSink
                made.append(OscSink(*self.osc, min_duration_s=events.min_duration_s))
            if self.lsl is not None:
                from .lsl import LslSink
                made.append(LslSink(self.lsl, class_names, rate))
            if self.serve is not None:
                from .serve import WebServer
                made.append(WebServer(*self.serve, token=self.token, class_names=class_names))
            opened = []
            for sink in made:
                sink.open()
                opened.append(sink)
            for sink in opened:
                if sink.name == "serve":
                    err.print(f"watch the run at [bold]{sink.url}[/]")
            return opened
        except BaseException:
            for sink in made:
                sink.close()
            raise


def _window(title: str):
    """A cv2 window; returns show(image) -> False when q or Esc is pressed."""
    import cv2
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ValueError("no display here (DISPLAY is unset): run with --headless, with --save/--jsonl for output")
    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    except cv2.error as e:
        raise ValueError(f"cannot open a window ({e}); run with --headless") from e

    def show(image) -> bool:
        cv2.imshow(title, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)
    return show


# ----------------------------------------------------------------------------- options
MODEL_OPT = typer.Option(None, "--model", help="Artifact (.pt, .onnx, .engine). Default: the newest model mgr made.")
POSES_OPT = typer.Option(1, "--num-poses", min=1, help="People the detector may find; with 2 or more the largest, stable one is followed (costs more pose time).")
WINDOW_OPT = typer.Option(None, "--window", help="Seconds the 4 sampled frames span (default: the model's clip_seconds, else 1.6).")
SMOOTH_OPT = typer.Option(1, "--smooth", min=1, help="Average probabilities over the last K inference steps.")
THRESH_OPT = typer.Option(0.2, "--threshold", min=0.0, max=1.0, help="Top-1 probability under which the label reads 'uncertain'.")
# One runtime thread by default: pose (MediaPipe's own pool) and the model run back to back,
# and a second spinning runtime thread slowed both on our 2-core machines (README "Live loop figures").
THREADS_OPT = threads_option(1)
MIRROR_OPT = typer.Option(False, "--mirror", help="Selfie view: flip the display (the model sees the unflipped frame).")
JSONL_OPT = typer.Option(None, "--jsonl", help="Write one JSON line per inference step here.")
ENTER_OPT = typer.Option(EventConfig.enter, "--event-enter", min=0.0, max=1.0, help="Probability at which a gesture class opens an event.")
EXIT_OPT = typer.Option(EventConfig.exit, "--event-exit", min=0.0, max=1.0, help="Probability under which an open event ends (hysteresis).")
CONFIRM_OPT = typer.Option(EventConfig.min_enter_s, "--event-confirm", min=0.0, help="Seconds a class must lead before its event opens.")
MIN_EVENT_OPT = typer.Option(EventConfig.min_duration_s, "--event-min", min=0.0, help="Events shorter than this many seconds are dropped.")
MERGE_OPT = typer.Option(EventConfig.merge_gap_s, "--event-merge", min=0.0, help="Same-class events closer than this many seconds merge.")


LSL_OPT = typer.Option(None, "--lsl", metavar="[NAME]", help="Lab Streaming Layer outlets: NAME-markers (one JSON "
                       "event per marker) and NAME (type MicroGesture: class probabilities + 75 Body_25 values per step), "
                       "stamped at capture time. `--lsl` alone: NAME mgr (put it after the video).")
OSC_OPT = typer.Option(None, "--osc", metavar="HOST:PORT", help="Send OSC messages (/mgr/top1, /mgr/probs, /mgr/person, "
                       "/mgr/event/start, /mgr/event/end) over UDP to HOST:PORT.")
SERVE_OPT = typer.Option(None, "--serve", metavar="[HOST:]PORT", help="Serve a live page at http://HOST:PORT/ and the "
                         "records at ws://HOST:PORT/ws (host default 127.0.0.1; another host is reachable by anyone "
                         "on that network: unauthenticated unless --serve-token).")
TOKEN_OPT = typer.Option(None, "--serve-token", help="Require ?token=TOKEN on every --serve request.")
STDOUT_JSON_OPT = typer.Option(False, "--stdout-json", help="Step records and event records as JSON lines on stdout "
                               "(everything else goes to stderr): `mgr replay x.mp4 --stdout-json | jq`.")
KEYPOINTS_OPT = typer.Option(False, "--log-keypoints", help="Add the 25 Body_25 [x, y, c] (frame pixels) to every "
                             "step record (JSONL, stdout, sockets).")


def _event_config(enter: float, exit_: float, confirm: float, min_s: float, merge: float) -> EventConfig:
    return EventConfig(enter=enter, exit=exit_, min_enter_s=confirm, min_duration_s=min_s, merge_gap_s=merge)


EVENTS_OPT = typer.Option(None, "--events", help="Write one JSON line per micro-gesture event (start, end, class, "
                          "confidence) here. A gesture still open at the end is closed with \"truncated\": true.")


def live(
    camera: Optional[int] = typer.Option(None, "--camera", help="Camera index (0 is the default webcam)."),
    video: Optional[Path] = typer.Option(None, "--video", help="A video file, played at its own rate."),
    url: Optional[str] = typer.Option(None, "--url", help="An RTSP or HTTP stream."),
    images: Optional[Path] = typer.Option(None, "--images", help="A folder of images, in natural order."),
    model: Optional[Path] = MODEL_OPT, pose_model: Optional[Path] = POSE_MODEL_OPT, num_poses: int = POSES_OPT,
    window: Optional[float] = WINDOW_OPT,
    inference_fps: Optional[float] = typer.Option(None, "--inference-fps", min=0.1, help="Inference steps per second, decoupled from the display. Default: every camera frame while the machine keeps up, else as often as the measured step time allows (logged)."),
    smooth: int = SMOOTH_OPT, threshold: float = THRESH_OPT, mirror: bool = MIRROR_OPT,
    headless: bool = typer.Option(False, "--headless", "--no-display", help="No window (servers, CI)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the annotated video (.mp4) here."),
    jsonl: Optional[Path] = JSONL_OPT, events: Optional[Path] = EVENTS_OPT, threads: int = THREADS_OPT,
    duration: Optional[float] = typer.Option(None, "--duration", min=0.1, help="Stop after this many seconds."),
    reconnects: int = typer.Option(3, "--reconnects", min=0, help="Reconnect attempts when a camera or stream drops."),
    event_enter: float = ENTER_OPT, event_exit: float = EXIT_OPT, event_confirm: float = CONFIRM_OPT,
    event_min: float = MIN_EVENT_OPT, event_merge: float = MERGE_OPT,
    lsl: Optional[str] = LSL_OPT, osc: Optional[str] = OSC_OPT, serve: Optional[str] = SERVE_OPT,
    serve_token: Optional[str] = TOKEN_OPT, stdout_json: bool = STDOUT_JSON_OPT, log_keypoints: bool = KEYPOINTS_OPT,
) -> None:
    """Recognise micro-gestures live from a camera (or stream, file, folder), with an overlay."""
    given = [s for s in (camera, video, url, images) if s is not None]
    if len(given) != 1:
        raise fail("give exactly one of --camera INDEX, --video PATH, --url URL, --images DIR")
    with user_errors(*REALTIME_USER_ERRORS):
        cfg = LiveConfig(window_s=window, inference_fps=inference_fps, smooth=smooth, threshold=threshold, mirror=mirror,
                         events=_event_config(event_enter, event_exit, event_confirm, event_min, event_merge))
        from .runner import run_live
        _check_outputs(save, jsonl, events)
        wanted = _SinkOptions(lsl, osc, serve, serve_token, stdout_json)
        with _recognizer(model, pose_model, num_poses, threads, cfg) as recognizer:
            # outputs to other programs open before the camera: a port in use fails before it starts
            sinks = wanted.open(recognizer.class_names, cfg.events, inference_fps or 0.0)   # LSL: 0 = irregular
            try:
                show = None if headless else _window("mgr live (q or Esc quits)")
                source = _open_live_source(camera, video, url, images, reconnects)
            except BaseException:
                for sink in sinks:
                    sink.close()
                raise
            try:
                outputs = _outputs(save, jsonl, source.fps or 30.0, None, log_timings=True, timed=True, events=events,
                                   sinks=sinks, log_keypoints=log_keypoints)
                summary = run_live(source, recognizer, cfg, outputs, show, duration)
            finally:
                source.close()
    _print_summary(summary, f"mgr live: {source.name}", wanted.console)


def _open_live_source(camera, video, url, images, reconnects: int):
    """The source a live flag names (no guessing: a file called "0" is not camera 0)."""
    if camera is not None:
        return open_camera(camera, reconnects)
    if url is not None:
        return open_stream(url, reconnects)
    if images is not None:
        return ImageFolderSource(images)
    return VideoFileSource(video)


def replay(
    video: Path = typer.Argument(..., help="Video file to annotate."),
    out: Optional[Path] = typer.Option(None, "--out", "--save", help="Annotated video (.mp4): same frame count and fps."),
    jsonl: Optional[Path] = JSONL_OPT, events: Optional[Path] = EVENTS_OPT,
    model: Optional[Path] = MODEL_OPT, pose_model: Optional[Path] = POSE_MODEL_OPT, num_poses: int = POSES_OPT,
    window: Optional[float] = WINDOW_OPT,
    inference_fps: Optional[float] = typer.Option(None, "--inference-fps", min=0.1, help="Steps per second of video time (default: every frame)."),
    smooth: int = SMOOTH_OPT, threshold: float = THRESH_OPT, mirror: bool = MIRROR_OPT, threads: int = THREADS_OPT,
    timings: bool = typer.Option(False, "--timings", help="Also log per-stage ms in the JSONL (then two runs differ there)."),
    event_enter: float = ENTER_OPT, event_exit: float = EXIT_OPT, event_confirm: float = CONFIRM_OPT,
    event_min: float = MIN_EVENT_OPT, event_merge: float = MERGE_OPT,
    lsl: Optional[str] = LSL_OPT, osc: Optional[str] = OSC_OPT, serve: Optional[str] = SERVE_OPT,
    serve_token: Optional[str] = TOKEN_OPT, stdout_json: bool = STDOUT_JSON_OPT, log_keypoints: bool = KEYPOINTS_OPT,
) -> None:
    """Annotate a recorded video deterministically: every frame, annotated mp4 + JSONL (+ events)."""
    with user_errors(*REALTIME_USER_ERRORS):
        cfg = LiveConfig(window_s=window, inference_fps=inference_fps, smooth=smooth, threshold=threshold, mirror=mirror,
                         events=_event_config(event_enter, event_exit, event_confirm, event_min, event_merge))
        from .runner import run_replay
        _check_outputs(out, jsonl, events)
        wanted = _SinkOptions(lsl, osc, serve, serve_token, stdout_json)
        source = VideoFileSource(video)
        try:
            with _recognizer(model, pose_model, num_poses, threads, cfg) as recognizer:
                sinks = wanted.open(recognizer.class_names, cfg.events, inference_fps or source.fps or 25.0)
                outputs = _outputs(out, jsonl, source.fps or 25.0, source.size, log_timings=timings, events=events,
                                   sinks=sinks, log_keypoints=log_keypoints)
                summary = _replay_with_progress(source, recognizer, cfg, outputs, run_replay)
        finally:
            source.close()
    _print_summary(summary, f"mgr replay: {video}", wanted.console)
    for label, path in (("annotated video", out), ("predictions", jsonl), ("events", events)):
        if path is not None:
            wanted.console.print(f"{label}: {path}")


def _replay_with_progress(source, recognizer, cfg, outputs, run_replay):
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("frames", total=source.frame_count or None)
        return run_replay(source, recognizer, cfg, outputs, on_frame=lambda i: progress.update(task, completed=i + 1))


def extract_keypoints(
    data: Path = typer.Argument(..., help="Dataset root: image trees (ROOT/<class>/<clip>.<frame>.jpg or ROOT/<class>/<clip>/<frame>.jpg) and/or videos."),
    out: Path = typer.Option(..., "--out", help="Keypoint tree to write (mirrors DATA); resumable."),
    pose_model: Optional[Path] = POSE_MODEL_OPT,
    num_poses: int = POSES_OPT,
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", min=1, help="Processes (default: all cores)."),
) -> None:
    """Write OpenPose-format Body_25 JSON from MediaPipe for every frame of a dataset."""
    with user_errors(*REALTIME_USER_ERRORS):
        cfg = ExtractConfig(data, out, PoseConfig(resolve_pose_model(pose_model), num_poses=num_poses), workers)
        plan = plan_extract(cfg)
        err.print(f"{plan.total} frames to do, {plan.skipped} already done, {workers} worker(s)")
        columns = (TextColumn("keypoints"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("frames", total=plan.total)
            summary = run_extract(cfg, plan, on_progress=lambda n: progress.advance(task, n))
    table = Table(title=f"extract-keypoints -> {out}")
    table.add_column("frames written", justify="right")
    table.add_column("already done", justify="right")
    table.add_column("no person", justify="right")
    table.add_column("unreadable", justify="right")
    table.add_row(str(summary.frames), str(summary.skipped), str(len(summary.no_person)), str(len(summary.unreadable)))
    stdout.print(table)
    for path in summary.unreadable[:20]:
        stdout.print(f"[yellow]unreadable:[/] {path}")
    if len(summary.unreadable) > 20:
        stdout.print(f"... and {len(summary.unreadable) - 20} more unreadable files")


def evaluate_stream(
    model: Path = typer.Argument(..., help="Artifact (.pt, .onnx, .engine); a model trained with --background "
                                 "has a 'no gesture' class."),
    data: Path = typer.Argument(..., help="Official-layout dataset: label CSV, untrimmed videos and/or per-frame skeletons."),
    split: str = typer.Option("test", "--split", help="Videos to score: test | val | train (those whose labelled clips "
                              "all lie in that part of the run's split) | all."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="The run's split.json (default: beside MODEL)."),
    iou: list[float] = typer.Option(list((0.3, 0.5)), "--iou", help="Temporal IoU a hit needs (repeat for several)."),
    source: str = typer.Option("auto", "--source", help="auto | video (MediaPipe pose on the video) | skeleton (the "
                               "dataset's per-frame OpenPose JSON; skeleton models). auto: skeleton where it can."),
    keypoints: Optional[Path] = typer.Option(None, "--keypoints", help="Parallel skeleton tree (default DATA/skeleton)."),
    pose_model: Optional[Path] = POSE_MODEL_OPT, window: Optional[float] = WINDOW_OPT, smooth: int = SMOOTH_OPT,
    inference_fps: Optional[float] = typer.Option(None, "--inference-fps", min=0.1, help="Steps per second of video time (default: every frame)."),
    threads: int = THREADS_OPT,
    event_enter: float = ENTER_OPT, event_exit: float = EXIT_OPT, event_confirm: float = CONFIRM_OPT,
    event_min: float = MIN_EVENT_OPT, event_merge: float = MERGE_OPT,
    tune: bool = typer.Option(False, "--tune", help="Also search the event settings on these videos (offline, from the "
                              "same steps) and print the best; tune on validation videos, report on test ones."),
    json_out: Optional[Path] = JSON_OPT,
) -> None:
    """Events of held-out untrimmed videos against their labels: precision, recall, F1 at tIoU, detection delay."""
    from .evaluate_stream import StreamEvalConfig, iter_runs, score_runs, tune_events
    with user_errors(*REALTIME_USER_ERRORS):
        if json_out is not None:
            from .outputs import check_output_path
            check_output_path(json_out, "scores")
        ev = _event_config(event_enter, event_exit, event_confirm, event_min, event_merge)
        live = LiveConfig(window_s=window, inference_fps=inference_fps, smooth=smooth, events=ev)
        cfg = StreamEvalConfig(data, split, split_file, tuple(iou), source, live, keypoints)
        from mgr.engines.backends import load_backend
        from .pipeline import pose_stage_factory
        backend = load_backend(_resolve_model(model), device="cpu", threads=threads)
        names = list(backend.class_names)
        make_pose = lambda: pose_stage_factory(resolve_pose_model(pose_model))()   # noqa: E731 (only videos read by pose)
        videos, chosen_from, runs_iter = iter_runs(backend, make_pose, cfg, [model.parent / "split.json"])
        err.print(f"{len(videos)} videos ({chosen_from}); "
                  + ("'no gesture' is a class of this model" if "no gesture" in names else
                     "[yellow]this model has no 'no gesture' class: events come from the thresholds alone[/]"))
        runs = []
        columns = (TextColumn("videos"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err) as progress:
            task = progress.add_task("videos", total=len(videos))
            for r in runs_iter:
                runs.append(r)
                progress.advance(task)
        scores = score_runs(runs, names, cfg.ious).to_dict()
    result = {"model": str(model), "data": str(data), "videos": [v.video_id for v in videos], "chosen_from": chosen_from,
              "background_class": "no gesture" in names, "events_config": ev.__dict__, "scores": scores,
              "sources": sorted({r.source for r in runs}), "seconds": sum(r.seconds for r in runs),
              "video_seconds": sum(r.video.num_frames / r.video.fps for r in runs),
              "events": {r.video.video_id: [e.to_record() for e in r.events] for r in runs}}
    if tune:
        result["tuning"] = tune_events(runs, names, ev)[:10]
    _print_stream_scores(result)
    if json_out is not None:
        from mgr.train.atomic import atomic_write_json
        atomic_write_json(json_out, result)
        stdout.print(f"figures: {json_out}")


def _print_stream_scores(r: dict) -> None:
    s = r["scores"]
    table = Table(title=f"mgr evaluate-stream: {len(r['videos'])} videos ({r['chosen_from']}), "
                        f"{'with' if r['background_class'] else 'without'} a 'no gesture' class")
    for col in ("tIoU", "events", "labels", "hits", "precision", "recall", "F1", "delay p50 s", "delay p95 s"):
        table.add_column(col, justify="right")
    for m in s["by_iou"]:
        delay = [f"{m[k]:.2f}" if m.get(k) is not None else "-" for k in ("delay_p50", "delay_p95")]
        table.add_row(f"{m['iou']:g}", str(m["tp"] + m["fp"]), str(m["tp"] + m["fn"]), str(m["tp"]), f"{m['precision']:.3f}",
                      f"{m['recall']:.3f}", f"{m['f1']:.3f}", *delay)
    stdout.print(table)
    stdout.print(f"{r['video_seconds']:.0f} s of video in {r['seconds']:.0f} s; events from {', '.join(r['sources'])}")
    for row in r.get("tuning", [])[:5]:
        c = row["config"]
        stdout.print(f"tuning: F1 {row['f1']:.3f} (delay p50 {row['delay_p50']}) with --event-enter {c['enter']} "
                     f"--event-exit {c['exit']} --event-confirm {c['min_enter_s']} --event-min {c['min_duration_s']} "
                     f"--event-merge {c['merge_gap_s']}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this package's commands to ``app`` (and benchmarks to ``bench_app``)."""
    app.command("live")(live)
    app.command("replay")(replay)
    app.command("evaluate-stream")(evaluate_stream)
    app.command("extract-keypoints")(extract_keypoints)
    bench_app.command("live")(bench_live)
    bench_app.command("soak")(bench_soak)


def bench_live(
    video: Path = typer.Argument(..., help="Video to replay (twice: caching on and off) and to loop as a 30 fps camera."),
    model: Optional[Path] = MODEL_OPT, pose_model: Optional[Path] = POSE_MODEL_OPT, num_poses: int = POSES_OPT,
    window: Optional[float] = WINDOW_OPT, threads: int = THREADS_OPT,
    camera_fps: float = typer.Option(30.0, "--camera-fps", min=1.0, help="Rate of the emulated camera."),
    inference_fps: Optional[float] = typer.Option(None, "--inference-fps", min=0.1, help="Live inference steps per second asked for (default: as `mgr live`, every frame while steps keep up)."),
    seconds: float = typer.Option(10.0, "--seconds", min=1.0, help="Length of the live part."),
    outputs: bool = typer.Option(True, "--outputs/--no-outputs", help="Also replay with LSL, OSC and --serve on "
                                 "(loopback): time they add per step, WebSocket delay."),
    json_out: Optional[Path] = JSON_OPT,
) -> None:
    """End-to-end FPS and per-stage p50/p95, feature caching on and off, live latency, outputs, in one run."""
    from .bench import BenchLiveConfig, run_bench_live
    with user_errors(*REALTIME_USER_ERRORS):
        VideoFileSource(video).close()       # a clear error before anything loads
        backend, make_pose = _backend_and_pose(model, pose_model, num_poses, threads)
        cfg = BenchLiveConfig(video, camera_fps, inference_fps, seconds, window, outputs=outputs)
        with err.status("benchmarking: the floor, 5 replays (as shipped; with mp4 + JSONL, with and without "
                        "read-ahead; cached serial; naive serial), live, replay with outputs ..."):
            results = run_bench_live(cfg, backend, make_pose)
    _print_bench(results)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2))
        stdout.print(f"figures: {json_out}")


def _print_bench(results: dict) -> None:
    table = Table(title=f"mgr bench live: {results['video']} ({results['runtime']}, {results['machine']['usable_cpus']} CPUs)")
    table.add_column("run", no_wrap=True)
    table.add_column("fps", justify="right")
    table.add_column("steps/s", justify="right")
    for stage in STAGES:
        table.add_column(f"{stage} p50/p95", justify="right")
    table.add_column("x floor", justify="right")
    table.add_column("step ms", justify="right")
    table.add_column("latency p50/p95", justify="right")
    floor = results.get("floor")
    if floor:
        cells = [f"{_ms(floor['stage_ms'][s]['p50'])}/{_ms(floor['stage_ms'][s]['p95'])}" if s in floor["stage_ms"]
                 else "-" for s in STAGES]
        table.add_row("floor (decode + pose)", f"{floor['fps']:.1f}", "-", *cells, "1.00", "-", "-")
    ratios = results.get("ratio_to_floor", {})
    from .bench import FILE_RUNS
    for name in ("replay", *FILE_RUNS, "replay_cached_serial", "replay_naive_serial", "live", "replay_outputs"):
        if name not in results:
            continue
        r = results[name]
        cells = [f"{_ms(r['stage_ms'][s]['p50'])}/{_ms(r['stage_ms'][s]['p95'])}" if r["stage_ms"].get(s) else "-"
                 for s in STAGES]
        lat = r["latency_ms"]
        ratio = ratios.get(name, {}).get("steps_per_s" if name == "live" else "fps")
        table.add_row(name, f"{r['display_fps']:.1f}", f"{r['inference_fps']:.1f}", *cells,
                      f"{ratio:.2f}" if ratio is not None else "-", f"{r['step_ms']:.1f}",
                      f"{lat['p50']:.0f}/{lat['p95']:.0f}" if lat else "-")
    stdout.print(table)
    if floor:
        stdout.print("x floor: frames per second as a ratio to the floor's (live: inference steps per second); "
                     "replay_files: mgr replay --out --jsonl as shipped")
    speedup = results.get("caching_speedup")
    if speedup:
        stdout.print(f"feature caching: inference step (encode + head) {speedup:.1f}x cheaper than naive")
    outs = results.get("replay_outputs", {}).get("outputs")
    if outs:
        added, delay = outs["added_ms_per_step"], outs["ws_delay_ms"]
        ratio = results["replay_outputs"]["display_fps"] / max(results["replay"]["display_fps"], 1e-9)
        stdout.print(f"outputs (LSL + OSC + --serve with a /ws and a /video client): the loop's calls add "
                     f"{_ms(added['p50'])} ms p50, {_ms(added['p95'])} ms p95 per step; replay fps "
                     f"{ratio:.2f}x of the run without outputs; WebSocket capture -> client p50 "
                     f"{delay['p50']:.1f} ms, p95 {delay['p95']:.1f} ms over {outs['ws_records']} records"
                     if delay else "outputs: no WebSocket record arrived")


def bench_soak(
    video: Optional[Path] = typer.Argument(None, help="Video to replay. Default: generate one, --minutes long, of the "
                                           "packaged astronaut photo panned and zoomed (cached under MGR_HOME/soak)."),
    model: Optional[Path] = MODEL_OPT, pose_model: Optional[Path] = POSE_MODEL_OPT, num_poses: int = POSES_OPT,
    window: Optional[float] = WINDOW_OPT, threads: int = THREADS_OPT,
    minutes: float = typer.Option(10.0, "--minutes", min=0.01, help="Length of the generated video (--mode live: of the run)."),
    mode: str = typer.Option("replay", "--mode", help="replay: the replay path with its mp4 and JSONL writers; "
                             "live: the live loop on an emulated camera looping the video's first frames, no writers."),
    inference_fps: float = typer.Option(10.0, "--inference-fps", min=0.1, help="Inference steps per second of video."),
    interval: float = typer.Option(30.0, "--interval", min=0.1, help="Sample memory every this many seconds of video "
                                   "(live: of wall time); the first sample is the warm-up."),
    max_growth_mb: float = typer.Option(50.0, "--max-growth-mb", help="Fail (exit 1) when memory grows more than this "
                                        "from the warm-up sample to the end."),
    out: Optional[Path] = typer.Option(None, "--out", help="Keep the annotated mp4 and JSONL in this folder "
                                       "(default: a temp folder, removed afterwards)."),
    camera_fps: float = typer.Option(30.0, "--camera-fps", min=1.0, help="--mode live: rate of the emulated camera."),
    json_out: Optional[Path] = JSON_OPT,
) -> None:
    """A long headless replay (default: a generated 10-minute video) with memory sampled, against a stated bound."""
    import tempfile
    from .soak import MODES, SoakConfig, run_soak, soak_video
    if mode not in MODES:
        raise fail(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    with user_errors(*REALTIME_USER_ERRORS), tempfile.TemporaryDirectory(prefix="mgr-soak-") as tmp:
        if video is not None:
            VideoFileSource(video).close()   # a clear error before anything loads
        backend, make_pose = _backend_and_pose(model, pose_model, num_poses, threads)
        if video is None:
            seconds = minutes * 60.0 if mode == "replay" else 20.0      # live loops only the first frames
            with err.status(f"generating a {seconds:g} s input video (once; cached) ..."):
                video = soak_video(seconds)
        cfg = SoakConfig(video, out if out is not None else Path(tmp), mode, minutes, interval, inference_fps,
                         window, max_growth_mb, camera_fps)
        result = _run_soak_with_progress(cfg, backend, make_pose, run_soak)
        if out is None and result["outputs"]:
            result["outputs"]["kept"] = False
    _print_soak(result)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2))
        stdout.print(f"figures: {json_out}")
    mem, outs = result["memory"], result["outputs"]
    failures = []
    if not mem["within_bound"]:
        failures.append(f"memory grew {mem['growth_mb']:+.1f} MB from the warm-up sample to the end, over the "
                        f"bound of {max_growth_mb:g} MB (--max-growth-mb)")
    if outs is not None and not outs["whole"]:
        failures.append(f"the outputs are not whole: mp4 {outs['mp4_frames']} of {outs['frames_written']} frames, "
                        f"JSONL {outs['jsonl_lines']} lines for {outs['steps']} steps")
    for f in failures:
        err.print(f"[bold red]soak failed:[/] {escape(f)}", soft_wrap=True)
    if failures:
        raise typer.Exit(1)
    if not mem["warmup_sampled"]:
        err.print(f"[yellow]note:[/] the input is shorter than one --interval ({interval:g} s): "
                  f"no warm-up sample, the growth is 0 by construction")
    stdout.print(f"[bold green]soak passed:[/] memory {mem['growth_mb']:+.1f} MB from warm-up to end, "
                 f"within the bound of {max_growth_mb:g} MB")


def _run_soak_with_progress(cfg, backend, make_pose, run_soak) -> dict:
    def on_sample(s: dict) -> None:
        err.print(f"{s['label'] or 'sample':>7} at {s['t_s']:7.1f} s of video ({s['wall_s']:7.1f} s wall, "
                  f"{s['frames']} frames): memory {s['rss_mb']:.1f} MB")
    if cfg.mode == "live":
        err.print(f"soak (live): {cfg.minutes * 60:g} s in {cfg.interval_s:g} s intervals (Ctrl-C stops early)")
        return run_soak(cfg, backend, make_pose, on_sample=on_sample)
    total = VideoFileSource(cfg.video)
    n = total.frame_count
    total.close()
    columns = (TextColumn("soak"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    err.print(f"soak (replay): {cfg.video}, memory every {cfg.interval_s:g} s of video (Ctrl-C stops early)")
    with Progress(*columns, console=err) as progress:
        task = progress.add_task("frames", total=n or None)
        return run_soak(cfg, backend, make_pose, on_sample=on_sample,
                        on_frame=lambda i: progress.update(task, completed=i + 1))


def _print_soak(r: dict) -> None:
    mem = r["memory"]
    table = Table(title=f"mgr bench soak ({r['mode']}): {r['video']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    slope = mem["slope_mb_per_min"]
    rows = [("video", f"{r['video_seconds'] / 60:.2f} min, {r['frames']} frames"),
            ("wall time", f"{r['elapsed_s']:.1f} s"),
            ("display / inference rate", f"{r['display_fps']:.1f} fps / {r['inference_fps']:.1f} steps/s"),
            ("inference steps (person found)", f"{r['steps']} ({r.get('steps_with_person', '-')})"),
            ("memory at start", f"{mem['start_mb']:.1f} MB"),
            (f"memory after warm-up ({mem['warmup_at_s']:.0f} s)", f"{mem['warmup_mb']:.1f} MB"),
            ("memory at end", f"{mem['end_mb']:.1f} MB"),
            ("peak memory", f"{mem['peak_mb']:.1f} MB"),
            ("growth warm-up -> end", f"{mem['growth_mb']:+.1f} MB (bound {mem['max_growth_mb']:g} MB)"),
            ("slope after warm-up", f"{slope:+.3f} MB/min" if slope is not None else "-")]
    outs = r["outputs"]
    if outs is not None:
        rows += [("annotated mp4", f"{outs['mp4_frames']} of {outs['frames_written']} frames"),
                 ("JSONL", f"{outs['jsonl_lines']} lines for {outs['steps']} steps")]
    for row in r.get("intervals", []):           # --mode live
        p95 = row["latency_p95_ms"]
        rows.append((f"interval {row['interval']}", f"{row['display_fps']:.1f} fps, {row['inference_fps']:.1f} "
                     f"steps/s, latency p95 {f'{p95:.0f} ms' if p95 is not None else '-'}, dropped {row['dropped']}"))
    rows.append(("ended", r["end_reason"]))
    for name, value in rows:
        table.add_row(name, escape(str(value)))
    stdout.print(table)
    if outs is not None and outs.get("kept", True):
        stdout.print(f"annotated video: {outs['mp4']}\npredictions: {outs['jsonl']}")
