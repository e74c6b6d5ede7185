"""`vemo` command line: parses arguments, builds a Config, calls the library. No logic lives here."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vemo import __version__
from vemo.config import ConfigError, load_config


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (sections synth, prepare, model, train, out)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=5 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="dataset reader: crema-d, fer2013 or folder")
    p.add_argument(
        "--root",
        help="dataset location: crema-d: the folder holding VideoFlash/; fer2013: fer2013.csv or folders of "
        "<class>/*.jpg; folder: <label>/<clip> sub-folders",
    )


RESUMABLE = ("train",)  # the commands with --resume, named when Ctrl-C stops one


def _levels(text: str) -> list[float]:
    """--levels 0,0.1,0.2 -> [0.0, 0.1, 0.2]; anything else is argparse's usage error naming the flag."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 0,0.1,0.2 (got {text!r})") from None


def _config(args: argparse.Namespace):
    shortcuts = {
        "dataset": "prepare.dataset",
        "root": "prepare.root",
        "out": "out",
        "model": "model.name",
        "epochs": "train.epochs",
        "encoder": "model.encoder",
    }
    given = {name: key for name, key in shortcuts.items() if getattr(args, name, None) is not None}
    for item in args.overrides:  # `--out A --set out=B`: which one was meant? Refused rather than guessed
        key = item.partition("=")[0].strip()
        flag = next((name for name, k in given.items() if k == key), None)
        if flag is not None:
            raise ValueError(f"--{flag} and --set {item} both set {key}; give one of them")
    return load_config(args.config, [*(f"{key}={getattr(args, name)}" for name, key in given.items()), *args.overrides])


def cmd_synth(args) -> None:
    from vemo.data.synth.dataset import synthesize

    cfg = _config(args)
    paths = synthesize(args.out_dir, cfg.synth, progress=not args.quiet)
    print(f"wrote {len(paths)} clips to {Path(args.out_dir) / 'VideoFlash'}")


def cmd_prepare(args) -> None:
    from vemo.data.loading.prepare import prepare

    cfg = _config(args)
    prepared = prepare(cfg.prepare, progress=not args.quiet)
    print(f"prepared data: {prepared.path}")
    if args.save_previews:
        from vemo.data.loading.previews import save_previews

        paths = save_previews(prepared, args.save_previews, args.previews)
        print(f"wrote {len(paths)} contact sheets to {args.save_previews}")


def cmd_train(args) -> None:
    from vemo.pipeline import train_command

    cfg, progress = _config(args), not args.quiet
    train_command(
        cfg, args.data, args.devices, args.num_nodes, progress, args.resume, args.force, score_test=not args.no_test
    )


def cmd_evaluate(args) -> None:
    from vemo.evaluation.evaluate import evaluate_command, user_data_choice

    levels = args.levels
    flags = [f"prepare.{name}" for name in ("dataset", "root") if getattr(args, name) is not None]
    given, honour = user_data_choice(flags, args.overrides, args.config)
    evaluate_command(
        _config(args), args.checkpoint, args.data, args.out, args.split, given, args.perturb, levels, not args.quiet,
        honour=honour, device=args.device,
    )  # fmt: skip


def _window(text: str) -> float | str:
    return text if text == "clip" else float(text)


def _face_set_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="prepare.KEY=VALUE",
        help="a face setting instead of the model's own (prepare.face, detect_frames, margin, size, frames)",
    )


def _face_settings(overrides: list[str], command: str) -> dict:
    """--set prepare.KEY=VALUE: face settings of the user's instead of those the model was trained with,
    typed and checked as the config file's are."""
    given, chosen = load_config(None, overrides).prepare, {}
    for name in (o.split("=", 1)[0].strip() for o in overrides):
        if not name.startswith("prepare."):
            raise ValueError(f"--set {name}: {command} takes face settings only (prepare.KEY=VALUE)")
        chosen[name.removeprefix("prepare.")] = getattr(given, name.removeprefix("prepare."))
    return chosen


def cmd_predict(args) -> None:
    from vemo.predict.cli_support import run_predict

    run_predict(
        args.inputs,
        args.checkpoint,
        args.out,
        webcam=args.webcam,
        window_s=args.window,
        hop_s=args.hop,
        all_faces=args.all_faces,
        annotate=args.annotate,
        max_seconds=args.max_seconds,
        progress=not args.quiet,
        workers=args.workers,
        device=args.device,
        preprocessing=_face_settings(args.overrides, "predict"),
    )


def cmd_serve(args) -> None:
    from vemo.serve import ServeSettings, serve

    settings = ServeSettings(
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        time_limit_s=args.time_limit,
        workers=args.workers,
        queue_size=args.queue,
        window_s=args.window,
        hop_s=args.hop,
        face_settings=_face_settings(args.overrides, "serve"),
    )
    serve(args.checkpoint, args.host, args.port, settings)


def cmd_ship(args) -> None:
    from vemo.checkpoint import ship_checkpoint
    from vemo.io import check_writable

    check_writable(Path(args.out).parent)
    ckpt = ship_checkpoint(args.checkpoint, args.out, half=args.half, member=args.member)
    epoch = f", epoch {ckpt.epoch}" if ckpt.epoch is not None else ""
    acc = f"val accuracy {ckpt.val_acc:.3f}" if ckpt.val_acc is not None else "no val accuracy recorded"
    half = "; kernels and matrices in half precision" if args.half else ""
    half += " (the val accuracy is the float32 weights')" if args.half and ckpt.val_acc is not None else ""
    print(f"wrote {args.out} ({ckpt.model_name}{epoch}, {acc}, temperature {ckpt.temperature:.3f}{half})")


def cmd_ensemble(args) -> None:
    from vemo.checkpoint import combine_checkpoints
    from vemo.io import check_writable

    check_writable(Path(args.out).parent)
    combine_checkpoints(args.checkpoints, flip_average=args.flip_average).save(args.out)
    print(f"wrote {args.out}; fit its temperature with: vemo calibrate --checkpoint {args.out} --data CACHE")


def cmd_calibrate(args) -> None:
    from vemo.data.loading.prepare import load_prepared
    from vemo.evaluation.calibration import calibrate_checkpoint

    calibrate_checkpoint(args.checkpoint, load_prepared(args.data), args.split, progress=True)


def cmd_export(args) -> None:
    from vemo.export import export_onnx

    print(f"wrote {export_onnx(args.checkpoint, args.onnx)}")


def cmd_compare(args) -> None:
    from vemo.experiments import run_compare

    out = Path(args.out or "runs/compare")
    run_compare(_config(args), args.data, out, args.models, args.seeds, progress=not args.quiet)


def cmd_demo(args) -> None:
    from vemo.pipeline import run_demo

    run_demo(_config(args), progress=not args.quiet)


def cmd_report(args) -> None:
    from vemo.reporting.report import write_report

    path = write_report(args.run_dir, args.compare, pdf=not args.no_pdf)
    made = [p.name for p in (path, path.with_suffix(".html"), path.with_suffix(".pdf")) if p.exists()]
    print(f"report: {path.parent} ({', '.join(made)})")


def cmd_models(args) -> None:
    from vemo.models.registry import model_table

    cfg = _config(args)
    t, s = cfg.prepare.frames, cfg.prepare.size
    print(f"encoder {cfg.model.encoder}, width {cfg.model.width}; FLOPs for one clip of {t} frames of {s}x{s}")
    print(f"{'model':<18} {'parameters':>11} {'GFLOPs/clip':>12}  description")
    for row in model_table(cfg.model, t, s):
        print(f"{row['name']:<18} {row['parameters']:>11,} {row['flops'] / 1e9:>12.3f}  {row['description']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vemo", description="Emotion recognition in short face videos.")
    parser.add_argument("--version", action="version", version=f"vemo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="render the embedded synthetic dataset (CREMA-D layout)")
    p.add_argument("out_dir", help="output folder; clips go to OUT_DIR/VideoFlash/")
    _common(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("prepare", help="decode, sample, crop faces, split by actor, cache")
    _data_args(p)
    p.add_argument("--save-previews", metavar="DIR", help="write a contact sheet of the crops per clip to DIR")
    p.add_argument("--previews", type=int, default=50, metavar="N", help="contact sheets for the first N clips")
    _common(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model (prepares the data first if needed), evaluate, report")
    _data_args(p)
    p.add_argument("--data", help="a prepared cache folder (skips prepare)")
    p.add_argument("--model", help="model variant (see `vemo models`)")
    p.add_argument("--encoder", help="frame encoder (small_cnn, resnet)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--out", help="run folder (default runs/demo)")
    again = p.add_mutually_exclusive_group()  # continue the run in OUT, or replace it: not both
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUT/last.pt (same config); starts fresh if there is none",
    )
    again.add_argument(
        "--force", action="store_true", help="replace the run already in OUT (its files are deleted first)"
    )
    p.add_argument(
        "--no-test",
        action="store_true",
        help="evaluate and report on val, leaving the test split unscored (candidates, ablations)",
    )
    p.add_argument("--devices", type=int, default=1, help="data-parallel processes on this machine (GPUs or CPU)")
    p.add_argument("--num-nodes", type=int, default=1, help="machines (start with torchrun/srun on each)")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a dataset split")
    p.add_argument(
        "--checkpoint", required=True, help="a .pt file written by vemo train, or 'default' for the shipped model"
    )
    _data_args(p)
    p.add_argument("--data", help="a prepared cache folder (skips prepare)")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "private-test", "all"],
        help="default: 'test' on the dataset the model was trained on, 'all' on any other data",
    )
    p.add_argument("--out", help="folder for metrics.json (default: the checkpoint's folder)")
    p.add_argument(
        "--perturb", nargs="+", choices=["noise", "blur", "occlusion"], help="also measure accuracy under these"
    )
    p.add_argument(
        "--levels", type=_levels, help="comma-separated levels for one --perturb kind (default: a range per kind)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="emotions over time in videos and images: tables per window and face, timeline, annotated video"
    )
    p.add_argument("inputs", nargs="*", help="video and image files and/or folders of them")
    p.add_argument("--checkpoint", default="default", help="a .pt from vemo train, or 'default' (the shipped model)")
    p.add_argument("--webcam", type=int, metavar="N", help="read camera N instead of files")
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop the webcam after this long (0: never)")
    p.add_argument(
        "--out", default="runs/predict", help="folder for NAME.csv/.json/.png per input and predictions.csv/.jsonl"
    )
    p.add_argument("--workers", type=int, default=1, metavar="N", help="inputs shared among N processes")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--window",
        type=_window,
        default=2.0,
        help="seconds per classified window (T frames in it), or 'clip': one window per video, as evaluate samples",
    )
    p.add_argument("--hop", type=float, default=0.5, help="seconds between window starts")
    p.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
    p.add_argument(
        "--annotate", metavar="OUT.mp4|DIR", help="write a video with boxes and labels (a folder for several inputs)"
    )
    _face_set_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="a local web page and HTTP API: drop a video, see its emotions over time")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--checkpoint", default="default", help="a .pt from vemo train, or 'default' (the shipped model)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="larger uploads are refused (HTTP 413)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longer videos are refused (HTTP 422)")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds one analysis may run (then HTTP 504)")
    p.add_argument("--workers", type=int, default=1, help="analyses at once")
    p.add_argument("--queue", type=int, default=4, help="analyses waiting; past that HTTP 503 with Retry-After")
    p.add_argument("--window", type=float, default=2.0, help="seconds per classified window")
    p.add_argument("--hop", type=float, default=0.5, help="seconds between window starts")
    _face_set_argument(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "calibrate", help="fit a checkpoint's softmax temperature on the validation split (stored in the checkpoint)"
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file, updated in place (atomically)")
    p.add_argument("--data", required=True, help="the prepared cache the model was trained on (cache/<dataset>-<key>)")
    p.add_argument("--split", default="val", choices=["val", "train"], help="split to fit on (never a test split)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("ship", help="package a checkpoint for distribution (weights, config, labels, stats)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--half",
        action="store_true",
        help="store kernels and matrices in half precision: half the file, computed in float32 as before; "
        "outputs move a little, so score the shipped file",
    )
    p.add_argument(
        "--member",
        type=int,
        metavar="I",
        help="from an ensemble, ship member I alone (0 = first) with its temperature, e.g. to train it further",
    )
    p.set_defaults(func=cmd_ship)

    p = sub.add_parser(
        "ensemble", help="combine checkpoints into one model that averages their calibrated probabilities"
    )
    p.add_argument("--checkpoints", nargs="+", required=True, help="two or more .pt files (or shipped names)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--flip-average",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every member averages each clip with its mirror image (default: as each member was trained)",
    )
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (0-255 face crops in, calibrated probabilities out)")
    p.add_argument("--checkpoint", default="default", help="a .pt from vemo train, or 'default'")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="train variants x seeds on the same data and split; compare.md/json/png")
    _data_args(p)
    p.add_argument("--data", help="a prepared cache folder (skips prepare)")
    p.add_argument("--models", nargs="+", help="variants (default: cnn_lstm cnn_ae_lstm; also cnn_ae_lstm_attn, c3d)")
    p.add_argument("--seeds", nargs="+", type=int, help="training seeds (default: 0 1 2)")
    p.add_argument("--out", help="folder for the runs and the comparison (default runs/compare)")
    _common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="the whole pipeline on the synthetic dataset, ending in a report")
    p.add_argument("--out", help="run folder (default runs/demo)")
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="write report.md, report.html (and report.pdf with Chromium) for a run")
    p.add_argument("run_dir")
    p.add_argument("--compare", metavar="DIR", help="a `vemo compare` folder whose ablation to include")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF even if Chromium is installed")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("models", help="list model variants with parameter counts")
    _common(p)
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vemo: %(message)s")
    from vemo.checkpoint import CheckpointError
    from vemo.data.loading.prepare import PrepareError
    from vemo.data.sources.video import ClipError
    from vemo.export import ExportError
    from vemo.io import OutputError

    try:
        args.func(args)
    except (ConfigError, PrepareError, CheckpointError, ClipError, OutputError, ExportError, ValueError) as err:
        print(f"vemo {args.command}: error: {' '.join(str(err).split())}", file=sys.stderr)  # always one line
        return 2
    except ImportError as err:  # a package this input needs is missing (PyAV for video): one line
        print(f"vemo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file or folder that cannot be read or written: one line naming it
        where = f"{err.filename}: " if err.filename else ""
        print(f"vemo {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; files are written whole or not at all
        resume = " (the same command with --resume continues from the last finished epoch)"
        print(f"\nvemo {args.command}: interrupted{resume if args.command in RESUMABLE else ''}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
