"""CLI commands of this package, added to the `mgr` app by realtime.cli.

    mgr export-onnx RUN/best.pt --out model.onnx [--opset 18] [--batch 1|dynamic] [--fp16 | --int8 --calib DATA]
    mgr export-trt (RUN/best.pt | model.onnx) --out model.engine [--fp16 | --int8 --calib DATA]
                   [--workspace MIB] [--profile MIN,OPT,MAX] [--timing-cache FILE]
    mgr bench models MODEL... [--json PATH] [--threads N]
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mgr.train.clikit import (JSON_OPT, device_option, err, fail, out as stdout, split_file_option, threads_option,
                              user_errors)

NOISY_LOGGERS = ("onnx_ir", "onnxscript", "onnxruntime", "modelopt")
_SPLIT_DEFAULT = "split.json beside a .pt checkpoint, else the seeded random split"


def _quiet_libraries() -> None:
    """The exporter and quantizer log every pass at INFO; keep our own INFO lines readable."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _precision(fp16: bool, int8: bool) -> str:
    if fp16 and int8:
        raise fail("choose one of --fp16 and --int8")
    return "fp16" if fp16 else "int8" if int8 else "fp32"


def _split_file(split_file: Optional[Path], models: list[Path]) -> Optional[Path]:
    """The run's split: --split-file, else the split.json beside a checkpoint (RUN/best.pt), else
    None (the seeded 60/20/20 split, which is the run's only for a --split random run on this data)."""
    from mgr.train.split import resolve_split    # the one policy (train.split is torch-free)
    if split_file is not None:
        return split_file
    beside = [Path(m).parent / "split.json" for m in models if Path(m).suffix == ".pt"]
    split, source = resolve_split(None, beside, fallback="random")   # no clips: clip_data makes the split
    if split is not None:
        err.print(f"using the run's split {escape(source)}")
        return Path(source)
    err.print(f"[yellow]{escape(source)}[/]", soft_wrap=True)
    return None


def _calibration(calib: Optional[Path], metadata: dict, clips: int, split_file: Optional[Path],
                 model: Optional[Path] = None):
    """--calib DATA: a dataset folder (training part of its split) or an .npz of preprocessed arrays."""
    if calib is None:
        return None
    from .clip_data import ClipSource, dataset_calibration, is_dataset
    from .quantize import npz_calibration
    if is_dataset(calib):
        split_file = _split_file(split_file, [model] if model is not None else [])
        return dataset_calibration(ClipSource(calib, part="train", split_file=split_file, max_clips=clips), metadata)
    if calib.suffix == ".npz":
        return npz_calibration(calib)
    raise fail(f"--calib {calib}: give a dataset folder or an .npz with preprocessed 'rgb'/'skeleton' arrays")


def _metadata_of(path: Path) -> dict:
    if path.suffix == ".pt":
        from mgr.train.checkpoint import read_checkpoint
        return read_checkpoint(path)["metadata"]
    from .onnx_meta import read_metadata
    return read_metadata(path)[0]


def _io_table(title: str, rows: list[tuple[str, str, dict]]) -> Table:
    t = Table(title=title)
    for col in ("file", "io", "name", "shape", "dtype"):
        t.add_column(col)
    for file, io, spec in rows:
        t.add_row(file, io, spec["name"], "(" + ", ".join(str(d) for d in spec["shape"]) + ")", spec["dtype"])
    return t


def _onnx_parity(checkpoint: Path, out: Path, calib) -> dict:
    from .backends import load_backend
    from .trt_export import agreement, sample_clips
    ref, test = load_backend(checkpoint), load_backend(out)
    rgb, skel = sample_clips(calib, ref.metadata)
    return agreement(ref.predict(rgb, skel), test.predict(rgb, skel))


def _print_parity(label: str, p: dict) -> None:
    stdout.print(f"parity vs {label} on {p['clips']} clips: max abs logit diff {p['max_abs_diff']:.2e}, "
                 f"top-1 agreement {100 * p['top1_agreement']:.1f}%, top-5 overlap {100 * p['top5_overlap']:.1f}%")


def export_onnx_cmd(
        checkpoint: Path = typer.Argument(..., help="Checkpoint (.pt), e.g. RUN/best.pt."),
        out: Path = typer.Option(..., "--out", help="Whole-clip graph path; .encoder.onnx and .head.onnx go beside it."),
        opset: int = typer.Option(18, help="ONNX opset (18 or newer)."),
        batch: str = typer.Option("dynamic", help="Batch axis: 1 or dynamic."),
        fp16: bool = typer.Option(False, "--fp16", help="FP16 graphs (ModelOpt AutoCast), FP32 inputs/outputs."),
        int8: bool = typer.Option(False, "--int8", help="Static INT8 (QDQ, per-channel weights) for CPUs."),
        calib: Optional[Path] = typer.Option(None, help="Calibration clips: dataset folder or .npz (with --int8)."),
        calib_clips: int = typer.Option(64, help="Calibration clips taken from DATA's training part."),
        split_file: Optional[Path] = split_file_option(_SPLIT_DEFAULT)) -> None:
    """Export a checkpoint to ONNX: frame encoder, clip head and whole-clip graph, self-describing."""
    from .backends import MissingRuntimeError
    from .export import OnnxExportConfig, export_onnx
    from .onnx_meta import read_metadata
    _quiet_libraries()
    precision = _precision(fp16, int8)
    with user_errors(MissingRuntimeError):      # CheckpointError is a ValueError
        cfg = OnnxExportConfig(opset=opset, batch=batch)
        data = _calibration(calib, _metadata_of(checkpoint), calib_clips, split_file, checkpoint)
        with err.status(f"exporting {checkpoint} ({precision})"):
            paths = export_onnx(checkpoint, out, cfg, precision, data)
            parity = _onnx_parity(checkpoint, paths.clip, data)
    rows = []
    for f in paths.files():
        _, info = read_metadata(f)
        rows += [(f.name, "input", t.to_dict()) for t in info.inputs] + \
                [(f.name, "output", t.to_dict()) for t in info.outputs]
    stdout.print(_io_table(f"ONNX graphs ({precision}, opset {opset})", rows))
    _print_parity("torch eager", parity)
    stdout.print(f"wrote {', '.join(str(p) for p in paths.files())}. Next: mgr bench models {checkpoint} {paths.clip}")


def export_trt_cmd(
        source: Path = typer.Argument(..., help="Checkpoint (.pt) or FP32 ONNX (.onnx) from mgr export-onnx."),
        out: Path = typer.Option(..., "--out", help="Whole-clip engine path (.engine); .encoder/.head engines beside it."),
        fp16: bool = typer.Option(False, "--fp16", help="FP16 via ModelOpt AutoCast (strongly typed build)."),
        int8: bool = typer.Option(False, "--int8", help="INT8 via explicit Q/DQ calibrated on --calib."),
        calib: Optional[Path] = typer.Option(None, help="Calibration clips: dataset folder or .npz."),
        calib_clips: int = typer.Option(64, help="Calibration clips taken from DATA's training part."),
        split_file: Optional[Path] = split_file_option(_SPLIT_DEFAULT),
        workspace: int = typer.Option(2048, help="Builder workspace limit, MiB."),
        profile: str = typer.Option("1,1,32", help="Clip batch profile MIN,OPT,MAX."),
        timing_cache: Optional[Path] = typer.Option(None, help="Timing cache file, read and updated."),
        tf32: bool = typer.Option(False, "--tf32", help="Let FP32 layers use TF32 tensor cores (Ampere+; faster, "
                                                          "about 1e-3 relative error). Off: FP32 means FP32."),
        batch: str = typer.Option("dynamic", help="ONNX batch axis when exporting from a checkpoint.")) -> None:
    """Build TensorRT engines (10 or 11) with a metadata sidecar, then check them against onnxruntime."""
    from .backends import MissingRuntimeError
    from .export import OnnxExportConfig
    from .tensorrt_build import BatchProfile, TrtBuildConfig, engine_io, import_tensorrt
    from .trt_export import export_trt
    _quiet_libraries()
    precision = _precision(fp16, int8)
    try:
        with user_errors(MissingRuntimeError):      # CheckpointError is a ValueError
            import_tensorrt()   # at once: no export work when TensorRT is missing
            cfg = TrtBuildConfig(precision=precision, workspace_mib=workspace, profile=BatchProfile.parse(profile),
                                 timing_cache=timing_cache, tf32=tf32)
            if cfg.profile.min > 1:
                err.print(f"[yellow]profile min {cfg.profile.min} > 1: the live loop runs batch 1 and will refuse "
                          f"these engines; fine for batch-only use[/]")
            data = _calibration(calib, _metadata_of(source), calib_clips, split_file, source)
            with err.status(f"building TensorRT engines from {source} ({precision})"):
                result = export_trt(source, out, cfg, data, OnnxExportConfig(batch=batch))
    except typer.Exit:             # a user error above, reported already (typer.Exit is a RuntimeError)
        raise
    except RuntimeError as e:      # TensorRT or CUDA errors: one clear line, not a traceback
        raise fail(f"{out}: the TensorRT build or its parity check failed: {e}") from e
    rows = [(getattr(result.engines, role).name, io["io"], io)
            for role, side in result.sidecars.items() for io in engine_io(side)]
    stdout.print(_io_table(f"TensorRT engines ({precision})", rows))
    _print_parity(f"onnxruntime FP32 ({result.parity['inputs']}), encoder + head engines", result.parity)
    _print_parity("onnxruntime FP32, whole-clip engine", result.parity["whole_clip"])
    stdout.print(f"wrote {', '.join(str(p) for p in result.engines.files())} (+ .json sidecars)")


def bench_models_cmd(
        models: list[Path] = typer.Argument(..., help="Artifacts to compare: .pt, .onnx, .engine."),
        json_out: Optional[Path] = JSON_OPT,
        threads: Optional[int] = threads_option(None),
        device: str = device_option("cpu"),
        iters: int = typer.Option(50, help="Timed calls per measurement, at most."),
        seconds: float = typer.Option(10.0, help="Time bound per measurement."),
        warmup: int = typer.Option(5, help="Untimed warm-up calls per measurement."),
        data: Optional[Path] = typer.Option(None, help="Dataset folder: also report top-1/top-5 on a split part."),
        part: str = typer.Option("test", help="Split part for --data: train | val | test | all."),
        split_file: Optional[Path] = split_file_option(_SPLIT_DEFAULT)) -> None:
    """Latency and throughput of each artifact through its backend, in one process."""
    from .backends import MissingRuntimeError
    from .bench import BenchConfig, run_bench, write_report
    _quiet_libraries()
    with user_errors(MissingRuntimeError):
        cfg = BenchConfig(warmup=warmup, iters=iters, max_seconds=seconds)
        source = None
        if data is not None:
            from .clip_data import ClipSource
            source = ClipSource(data, part=part, split_file=_split_file(split_file, models))
        with err.status("benchmarking") as status:
            report = run_bench([str(m) for m in models], device, threads, cfg,
                               progress=lambda m: status.update(f"benchmarking {m}"), data=source)
    stdout.print(_bench_table(report))
    m = report["machine"]
    stdout.print(f"{m['cpu']}, {m['usable_cpus']} CPUs, threads {m['threads'] or 'default'}, "
                 f"GPU {'not checked (torch not loaded)' if m['gpus'] is None else ', '.join(m['gpus']) or 'none'}; p50 over {cfg.iters} calls at most, warm-up excluded")
    if json_out:
        write_report(report, json_out)
        stdout.print(f"wrote {json_out}")


def _bench_table(report: dict) -> Table:
    """One column per model, one row per measurement (fits a narrow terminal)."""
    t = Table(title="mgr bench models (latency ms, p50 / p95)")
    t.add_column("measurement")
    for r in report["results"]:
        t.add_column(f"{Path(r['model']).name}\n{r['runtime']} {r['precision']}", justify="right")
    lat = lambda d: f"{d['p50_ms']:.2f} / {d['p95_ms']:.2f}" if d else "-"  # noqa: E731
    rows = [("frame encoder, batch 1", lambda r: lat(r.get("encoder_b1"))),
            ("clip head, batch 1", lambda r: lat(r["head_b1"]))]
    rows += [(f"clips/s, batch {b}", lambda r, b=b: f"{r['clips_per_s'][b]:.1f}")
             for b in report["results"][0]["clips_per_s"]]
    rows += [("stream step, naive", lambda r: lat(r["stream_naive"])),
             ("stream step, cached", lambda r: lat(r["stream_cached"])),
             ("cached speedup", lambda r: f"{r['stream_speedup']:.2f}x")]
    if "accuracy" in report["results"][0]:
        acc = report["results"][0]["accuracy"]
        rows += [(f"top-1, {acc['part']} ({acc['clips']} clips)", lambda r: f"{100 * r['accuracy']['top1']:.2f}%"),
                 (f"top-5, {acc['part']}", lambda r: f"{100 * r['accuracy']['top5']:.2f}%")]
    for label, cell in rows:
        t.add_row(label, *(cell(r) for r in report["results"]))
    return t


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this package's commands to ``app`` (and benchmarks to ``bench_app``)."""
    app.command("export-onnx")(export_onnx_cmd)
    app.command("export-trt")(export_trt_cmd)
    bench_app.command("models")(bench_models_cmd)
