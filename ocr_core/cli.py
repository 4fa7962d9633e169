"""`python -m ocr_core`: train, evaluate, predict and manage runs from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from .augment import PRESETS, as_spec, preview_grid, ranges_text
from .calibration import Calibration, calibration_of, read_digits
from .checkpoints import NAME_RULE, RunStore
from .corruptions import CORRUPTIONS, DEFAULT_SEVERITY, SEVERITIES
from .data import load_mnist
from .errors import UserError
from .evaluation import evaluate, folded_for_inference
from .metadata import RunMetadata
from .models import ARCHITECTURES, build_model, multiply_adds, parameter_count
from .preprocess import ImageError, digit_from_image, load_image
from .pairs import PairTraining, build_pair_reader, save_pair_reader, shipped_pair_reader
from .reading import READ_SIDE, read_number
from .robustness import (
    BASELINE_RUN,
    DIGITS_PER_CLASS,
    ReportProgress,
    RobustnessReport,
    baseline_report,
    cached_report,
    run_report,
    summary,
)
from .runs import calibrate_run, rescore_run, train_run
from .training import OPTIMIZERS, PRECISIONS, RECIPES, SCHEDULES, Cadence, Progress, TrainingCallback, with_overrides


class ProgressBar(TrainingCallback):
    """tqdm over optimizer steps, with the per-epoch test accuracy written above it."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.cadence = Cadence(seconds=0.5)

    def on_batch(self, progress: Progress) -> None:
        if not self.cadence.due(progress):
            return
        if self.bar is None:
            self.bar = tqdm(total=progress.total_steps, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(progress.step - self.bar.n)
        self.bar.set_postfix(
            epoch=f"{progress.epoch}/{progress.total_epochs}",
            loss=f"{progress.loss:.3f}",
            img_s=f"{progress.images_per_second:,.0f}",
        )

    def on_epoch(self, progress: Progress) -> None:
        record = progress.history[-1]
        message = (
            f"epoch {record.epoch:g}: train loss {record.train_loss:.4f} acc {record.train_accuracy:.4f} | "
            f"test loss {record.test_loss:.4f} acc {record.test_accuracy:.4f} | {record.seconds:.1f}s, "
            f"{record.images_per_second:,.0f} img/s"
        )
        (self.bar.write if self.bar else print)(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def stop_then_abort(stop: threading.Event):
    """A SIGINT handler: the first Ctrl-C asks the loop to stop at the next batch, so what was trained is
    still scored and saved; a second one aborts at once."""

    def handle(signal_number, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(
            "\nstopping after this batch, then scoring and saving; press Ctrl-C again to abort at once", file=sys.stderr
        )

    return handle


def accuracies(metadata: RunMetadata) -> str:
    return f"test accuracy {metadata.metric('clean'):.4f} clean, {metadata.metric('seed_augmented'):.4f} seed-augmented"


def emit(payload, as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2) if as_json else text)


def command_train(args: argparse.Namespace) -> int:
    config = with_overrides(
        RECIPES[args.recipe],
        architecture=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        ema_decay=args.ema,
        seed=args.seed,
        holdout=args.holdout,
        device=args.device,
        precision=args.precision,
    )
    data = load_mnist()
    if args.train_limit or args.test_limit:
        # the holdout is the images right after the first N, so a quick run still has held-out digits
        data = data.subset(args.train_limit and args.train_limit + config.holdout, args.test_limit)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, stop_then_abort(stop))
    bar = ProgressBar()
    try:
        info, result = train_run(args.name, config, RunStore(), data, (bar,), stop, overwrite=args.overwrite)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    if info is None:
        print("error: stopped before any batch was trained; nothing saved", file=sys.stderr)
        return 1
    state = "stopped early, saved" if result.stopped else "saved"
    print(f"{state} {info.name} ({info.path}) in {result.seconds:.1f}s: {accuracies(info.metadata)}")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    store = RunStore()
    model, _ = store.load(args.name)
    data = load_mnist()
    spec = as_spec(args.augment)
    evaluation = evaluate(model, data.test_images[: args.test_limit], data.test_labels[: args.test_limit], spec)
    per_class = evaluation.per_class()
    payload = {
        "name": args.name,
        **evaluation.summary(),
        "errors": len(evaluation.misclassified),
        "per_class": [vars(metrics) for metrics in per_class],
        "confusion": evaluation.confusion.tolist(),
    }
    lines = [
        f"{args.name} on the {'clean' if spec.is_identity else spec.to_string()} test set: "
        f"accuracy {evaluation.accuracy:.4f}, loss {evaluation.loss:.4f}, "
        f"{payload['errors']} errors in {len(evaluation.labels)}",
        "digit  precision  recall  f1      support",
    ]
    lines += [f"{m.digit:>5}  {m.precision:9.4f}  {m.recall:6.4f}  {m.f1:.4f}  {m.support:>7}" for m in per_class]
    emit(payload, args.json, "\n".join(lines))
    return 0


def predict_entry(path: str, model, calibration: Calibration | None) -> dict:
    """One image's JSON answer: the digit with its (calibrated) confidence and whether it looks like a digit
    at all; degenerate ink gets its reason and no digit; an unreadable file raises ImageError."""
    prepared = digit_from_image(load_image(path))
    if not prepared.readable:
        return {"image": path, "prediction": None, "looks_like_digit": False, "problem": prepared.problem}
    reading = read_digits(model, prepared.digit[None], calibration)[0]
    return {
        "image": path,
        "prediction": reading.prediction,
        "confidence": reading.confidence,
        "calibrated": reading.calibrated,
        "looks_like_digit": reading.looks_like_digit,
        "digit_score": reading.digit_score,
        "digit_threshold": reading.threshold,
        "probabilities": [round(float(p), 6) for p in reading.probabilities],
    }


def predict_line(entry: dict) -> str:
    if "error" in entry:
        return f"{entry['image']}: error: {entry['error']}"
    if entry["prediction"] is None:
        return f"{entry['image']}: not a digit: {entry['problem']}"
    confidence = f"{entry['confidence']:.1%}{'' if entry['calibrated'] else ', not calibrated'}"
    if entry["looks_like_digit"] is False:
        return f"{entry['image']}: does not look like a digit (closest: {entry['prediction']}, {confidence})"
    return f"{entry['image']}: {entry['prediction']} ({confidence})"


def command_predict(args: argparse.Namespace) -> int:
    model, metadata = RunStore().load(args.name)
    calibration = calibration_of(metadata)
    results, failures = [], 0
    for path in args.images:
        try:
            results.append(predict_entry(path, model, calibration))
        except ImageError as error:
            failures += 1
            results.append({"image": path, "error": str(error)})
    emit(results, args.json, "\n".join(predict_line(entry) for entry in results))
    return 1 if failures else 0


def command_calibrate(args: argparse.Namespace) -> int:
    for name in args.names:
        calibration = calibration_of(calibrate_run(name).metadata)
        detector = calibration.detector
        print(
            f"calibrated {name} on {calibration.held_out:,} held-out digits: temperature "
            f"{calibration.temperature:.3f}, expected calibration error {calibration.ece_before:.4f} -> "
            f"{calibration.ece_after:.4f}; not-a-digit threshold {detector.threshold:.1f} "
            f"({detector.held_out_false_alarms:.2%} of held-out digits flagged)"
        )
    return 0


def read_line(entry: dict) -> str:
    if "error" in entry:
        return f"{entry['image']}: error: {entry['error']}"
    strange = [str(index + 1) for index, digit in enumerate(entry["digits"]) if digit["looks_like_digit"] is False]
    note = f" (digit {', '.join(strange)} from the left does not look like a digit)" if strange else ""
    return f"{entry['image']}: {entry['text'] or '(no digits found)'}{note}"


def command_read(args: argparse.Namespace) -> int:
    model, metadata = RunStore().load(args.name)
    model, calibration = folded_for_inference(model), calibration_of(metadata)
    pair_model = None if args.no_pairs else shipped_pair_reader()
    results, failures = [], 0
    for path in args.images:
        try:
            reading = read_number(load_image(path, max_side=READ_SIDE), model, calibration, pair_model)
        except ImageError as error:
            failures += 1
            results.append({"image": path, "error": str(error)})
            continue
        results.append(
            {
                "image": path,
                "text": reading.text,
                "digits": [
                    {
                        "digit": digit.digit,
                        "confidence": round(digit.confidence, 6),
                        "box": list(digit.box),
                        "looks_like_digit": digit.looks_like_digit,
                        "pair": digit.pair,
                    }
                    for digit in reading.digits
                ],
            }
        )
    emit(results, args.json, "\n".join(read_line(entry) for entry in results))
    return 1 if failures else 0


def command_train_pairs(args: argparse.Namespace) -> int:
    data = load_mnist()
    settings = PairTraining(epochs=args.epochs, seed=args.seed)

    def report(epoch: int, loss: float, accuracy: float) -> None:
        print(f"epoch {epoch}/{settings.epochs}: loss {loss:.3f}, training accuracy {accuracy:.2%}", file=sys.stderr)

    print(f"composing {args.samples:,} glyphs from MNIST's training digits ...", file=sys.stderr)
    model, check = build_pair_reader(
        data.train_images.numpy(), data.train_labels.numpy(), args.samples, settings, report
    )
    save_pair_reader(model, args.out, {"samples": str(args.samples), "epochs": str(settings.epochs)})
    print(
        f"saved {args.out}: on held-out digits, pairs read right {check.pairs_right:.2%}, single digits read as "
        f"one digit {check.singles_right:.2%}, pairs read as one digit {check.pairs_taken_for_one:.2%}"
    )
    return 0


def command_list(args: argparse.Namespace) -> int:
    runs = RunStore().list()
    payload = []
    for run in runs:
        entry = {"name": run.name, "path": str(run.path), "size": run.size}
        if run.ok:
            entry.update(
                architecture=run.metadata.architecture,
                augment=run.metadata.augment,
                accuracy=run.metric("clean"),
                seed_augmented_accuracy=run.metric("seed_augmented"),
                epochs=run.metadata.epochs_completed,
                created=run.metadata.created,
            )
        else:
            entry["problem"] = run.problem
        payload.append(entry)
    lines = [f"{'name':<20} {'arch':<9} {'clean':>7} {'seed-aug':>8}  augment"]
    for entry in payload:
        if "problem" in entry:
            lines.append(f"{entry['name']:<20} skipped: {entry['problem']}")
        else:
            lines.append(
                f"{entry['name']:<20} {entry['architecture']:<9} {entry['accuracy']:>7.4f} "
                f"{entry['seed_augmented_accuracy']:>8.4f}  {entry['augment']}"
            )
    emit(payload, args.json, "\n".join(lines) if payload else "no runs saved yet")
    return 0


def command_info(args: argparse.Namespace) -> int:
    """The run's metadata, plus the summary of its robustness report when one is cached (never computed here)."""
    store = RunStore()
    info = store.info(args.name)
    report = cached_report(info, store)
    baseline = cached_report(store.info(BASELINE_RUN), store) if report and store.exists(BASELINE_RUN) else None
    robustness = summary(report, baseline) if report else "no report yet: python -m ocr_core robustness NAME"
    print(json.dumps({**info.metadata.to_dict(), "robustness": robustness}, indent=2))
    return 0


def report_bar() -> tuple[ReportProgress, Callable[[], None]]:
    """A tqdm bar over the report's test sets, and its closer."""
    bar: list[tqdm] = []

    def progress(done: int, total: int, label: str) -> None:
        if not bar:
            bar.append(tqdm(total=total, unit="set", file=sys.stderr, dynamic_ncols=True))
        bar[0].update(done - bar[0].n)
        bar[0].set_postfix_str(label)

    return progress, lambda: bar and bar[0].close()


def report_payload(report: RobustnessReport, baseline: RobustnessReport | None, severities: tuple[int, ...]) -> dict:
    return {
        "clean": report.clean,
        "digits": report.digits,
        "suite_version": report.suite_version,
        "corruptions": {
            name: {str(s): by_severity[s] for s in severities} for name, by_severity in report.accuracy.items()
        },
        "mean": {str(s): report.mean(s) for s in severities},
        "mce": report.mce(baseline),
        "worst": {str(s): dict(zip(("corruption", "accuracy"), report.worst(s), strict=True)) for s in severities},
    }


def percent_or_dash(value: float | None, scale: float = 100) -> str:
    return "-" if value is None else f"{value * scale:.1f}"


def command_robustness(args: argparse.Namespace) -> int:
    store = RunStore()
    severities = SEVERITIES if args.severity == "all" else (int(args.severity),)
    for name in args.names:
        store.info(name)  # a wrong name fails before any work
    progress, close = report_bar()
    try:
        data = (
            None
            if all(cached_report(store.info(n), store) for n in {*args.names, BASELINE_RUN} if store.exists(n))
            and not args.recompute
            else load_mnist()
        )
        reports = {name: run_report(name, store, data, progress, recompute=args.recompute) for name in args.names}
        baseline = baseline_report(store, data, progress)
    finally:
        close()
    payload = {name: report_payload(report, baseline, severities) for name, report in reports.items()}
    if args.json:
        emit(payload, True, "")
        return 0
    columns = [(name, severity) for name in reports for severity in severities]
    heads = [name + (f" s{severity}" if len(severities) > 1 else "") for name, severity in columns]
    worst_names = [reports[name].worst(severity)[0] for name, severity in columns]
    width = max(9, *map(len, heads), *map(len, worst_names)) + 1  # a space between columns, whatever they hold

    def row(label: str, cell: Callable[[str, int], str]) -> str:
        return f"{label:<14}" + "".join(f"{cell(name, severity):>{width}}" for name, severity in columns)

    lines = [
        f"{'accuracy %':<14}" + "".join(f"{head:>{width}}" for head in heads),
        row("clean", lambda n, s: percent_or_dash(reports[n].clean)),
    ]
    lines += [
        row(corruption, lambda n, s, c=corruption: percent_or_dash(reports[n].accuracy[c][s]))
        for corruption in CORRUPTIONS
    ]
    lines += [
        row("mean", lambda n, s: percent_or_dash(reports[n].mean(s))),
        row("mCE %", lambda n, s: percent_or_dash(reports[n].mce(baseline))),
        row("worst", lambda n, s: reports[n].worst(s)[0]),
    ]
    digits = next(iter(reports.values())).digits
    lines.append(
        f"({digits:,} test digits, {DIGITS_PER_CLASS} per class; mCE relative to `{BASELINE_RUN}` over "
        f"severities 1-5{'' if baseline else ': no seed run, so none'})"
    )
    print("\n".join(lines))
    return 0


def command_rescore(args: argparse.Namespace) -> int:
    print(f"rescored {args.name}: {accuracies(rescore_run(args.name).metadata)}")
    return 0


def command_rename(args: argparse.Namespace) -> int:
    info = RunStore().rename(args.old, args.new)
    print(f"renamed {args.old} to {info.name}")
    return 0


def command_delete(args: argparse.Namespace) -> int:
    RunStore().delete(args.name)
    print(f"deleted {args.name}")
    return 0


def command_models(args: argparse.Namespace) -> int:
    payload = []
    for arch in ARCHITECTURES.values():
        model = build_model(arch.name)
        payload.append(
            {
                "name": arch.name,
                "parameters": parameter_count(model),
                "multiply_adds": multiply_adds(model),
                "description": arch.description,
            }
        )
    emit(
        payload,
        args.json,
        "\n".join(
            f"{p['name']:<9} {p['parameters']:>8,} params "
            f"{p['multiply_adds'] / 1e6:6.2f} M mult-adds  {p['description']}"
            for p in payload
        ),
    )
    return 0


def command_preview(args: argparse.Namespace) -> int:
    from PIL import Image

    data = load_mnist()
    grid = preview_grid(
        data.train_images,
        args.augment,
        seed=args.seed,
        rows=args.rows,
        columns=args.columns,
        variants_of_first=args.variants,
    )
    Image.fromarray(grid.numpy()).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(args.output)
    print(f"wrote {args.output}")
    return 0


def command_explain(args: argparse.Namespace) -> int:
    from .explain import write_explanation

    model, _ = RunStore().load(args.name)
    prepared = digit_from_image(load_image(args.image))
    if not prepared.readable:
        raise ImageError(f"{args.image}: {prepared.problem}")
    report = write_explanation(model, prepared.digit, args.out, args.target)
    print(
        f"{args.name} reads {args.image} as {report.prediction} ({report.confidence:.1%}); explaining {report.target}:"
    )
    for path in report.written:
        print(f"wrote {path}")
    for skipped in report.skipped:
        print(f"skipped {skipped}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ocr_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save it as a run")
    train.add_argument("--name", required=True, help=f"run name: {NAME_RULE}")
    train.add_argument(
        "--recipe",
        choices=RECIPES,
        default="fast",
        help="starting settings: fast (default, ~99%% in seconds), tutorial, robust (robust in about a minute), best",
    )
    train.add_argument("--model", choices=ARCHITECTURES, help="architecture")
    train.add_argument("--epochs", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate (peak rate under onecycle)")
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--label-smoothing", type=float)
    train.add_argument(
        "--augment",
        help=f"preset ({', '.join(PRESETS)}) or spec like rotate=15,translate=0.1; ops and ranges: {ranges_text()}",
    )
    train.add_argument("--ema", type=float, help="decay of an average of the weights, e.g. 0.999 (0: off)")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", help="auto (default), cpu, cuda, mps")
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default: bf16 mixed precision where the hardware has it), fp32, bf16",
    )
    train.add_argument(
        "--holdout",
        type=int,
        help="keep the last N training images out of training, for calibration (every recipe: 5000; 0: train on all)",
    )
    train.add_argument(
        "--train-limit",
        type=int,
        help="train on the first N training images only (the holdout is the images after them)",
    )
    train.add_argument("--test-limit", type=int, help="use only the first N test images")
    train.add_argument("--overwrite", action="store_true", help="replace a run with the same name")
    train.set_defaults(handler=command_train)

    evaluate_parser = commands.add_parser("evaluate", help="score a run on the (optionally augmented) test set")
    evaluate_parser.add_argument("name")
    evaluate_parser.add_argument("--augment", default="none", help="transform the test set first (preset or spec)")
    evaluate_parser.add_argument("--test-limit", type=int)
    evaluate_parser.add_argument("--json", action="store_true")
    evaluate_parser.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="read digits from image files")
    predict.add_argument("name")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=command_predict)

    calibrate = commands.add_parser(
        "calibrate", help="fit calibrated confidence and the not-a-digit flag on a run's held-out digits"
    )
    calibrate.add_argument("names", nargs="+", metavar="NAME")
    calibrate.set_defaults(handler=command_calibrate)

    read = commands.add_parser("read", help="read handwritten numbers (several digits) from image files")
    read.add_argument("name")
    read.add_argument("images", nargs="+", metavar="IMAGE")
    read.add_argument("--json", action="store_true")
    read.add_argument(
        "--no-pairs", action="store_true", help="do not read wide glyphs as two touching digits (only cut them)"
    )
    read.set_defaults(handler=command_read)

    train_pairs = commands.add_parser(
        "train-pairs", help="train the pair reader (two touching digits read as one glyph) on MNIST training digits"
    )
    train_pairs.add_argument("--out", type=Path, default=Path("pair_reader.safetensors"), help="file to write")
    train_pairs.add_argument("--samples", type=int, default=150_000, help="glyphs to compose (default: 150,000)")
    train_pairs.add_argument("--epochs", type=int, default=PairTraining.epochs)
    train_pairs.add_argument("--seed", type=int, default=0)
    train_pairs.set_defaults(handler=command_train_pairs)

    listing = commands.add_parser("list", help="list saved runs")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=command_list)

    info = commands.add_parser("info", help="print a run's metadata (JSON)")
    info.add_argument("name")
    info.set_defaults(handler=command_info)

    robustness = commands.add_parser(
        "robustness", help="accuracy under the corruption suite (MNIST-C style), per corruption and severity"
    )
    robustness.add_argument("names", nargs="+", metavar="NAME")
    robustness.add_argument(
        "--severity",
        choices=[*map(str, SEVERITIES), "all"],
        default=str(DEFAULT_SEVERITY),
        help=f"severity 1-5 (default {DEFAULT_SEVERITY}, the reference's strength) or all",
    )
    robustness.add_argument(
        "--json", action="store_true", help="per run: corruption -> severity -> accuracy (fractions), mean, mCE, clean"
    )
    robustness.add_argument("--recompute", action="store_true", help="ignore cached reports")
    robustness.set_defaults(handler=command_robustness)

    rescore = commands.add_parser("rescore", help="score a run again on today's test sets and update its metrics")
    rescore.add_argument("name")
    rescore.set_defaults(handler=command_rescore)

    rename = commands.add_parser("rename", help="rename a run")
    rename.add_argument("old")
    rename.add_argument("new")
    rename.set_defaults(handler=command_rename)

    delete = commands.add_parser("delete", help="delete a run")
    delete.add_argument("name")
    delete.set_defaults(handler=command_delete)

    models = commands.add_parser("models", help="list architectures with size and compute")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=command_models)

    preview = commands.add_parser("preview", help="save a PNG grid of augmented training digits")
    preview.add_argument("--augment", default="recommended")
    preview.add_argument("--output", default="augment-preview.png")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--rows", type=int, default=4)
    preview.add_argument("--columns", type=int, default=8)
    preview.add_argument("--variants", action="store_true", help="show variants of the same digits")
    preview.set_defaults(handler=command_preview)

    explain = commands.add_parser("explain", help="save PNGs of what a run sees in an image and why it answers")
    explain.add_argument("name")
    explain.add_argument("image", help="a PNG or JPEG of one digit, either polarity")
    explain.add_argument("--out", required=True, type=Path, help="folder for the PNGs (created if needed)")
    explain.add_argument(
        "--target",
        type=int,
        choices=range(10),
        metavar="DIGIT",
        help="the class to explain (default: the run's answer)",
    )
    explain.set_defaults(handler=command_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:  # anything else is a bug and keeps its traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console entry point (`python -m ocr_core`, and `ocr-lab` once the project is pip-installed)."""
    code = main()
    # Unloading torch at interpreter exit takes 0.5-1 s here (measured), a sixth of a default training run.
    # Every file we write is complete and renamed into place before main returns, so skip the unloading.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
