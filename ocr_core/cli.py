"""`python -m ocr_core`: train, evaluate, predict and manage runs from a terminal."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from .augment import PRESETS, as_spec, preview_grid, ranges_text
from .calibration import Calibration, calibration_of, read_digits
from .checkpoints import NAME_RULE, RunStore, name_taken, validate_run_name
from .files import atomic_path
from .corruptions import CORRUPTIONS, DEFAULT_SEVERITY, SEVERITIES
from .data import load_mnist
from .errors import UserError, printable
from .evaluation import evaluate, folded_for_inference
from .metadata import AUGMENTED_TEST, CLEAN_TEST, RunMetadata
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
from .personal import DEFAULT_LAYERS, LAYERS, STEPS, personalise, score_writer
from .samples import WRITER_RULE, SampleStore, validate_label, validate_writer
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
    clean, augmented = metadata.metric(CLEAN_TEST), metadata.metric(AUGMENTED_TEST)
    return f"test accuracy {clean:.4f} clean, {augmented:.4f} seed-augmented"


def json_safe(value):
    """`value` with every NaN or infinity as null: strict JSON, which every parser reads."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def emit(payload, as_json: bool, text: str) -> None:
    """The answer on stdout: strict JSON, or text whose every line is printable (no control characters from a
    file or run name reach the terminal; undecodable bytes of a file name are shown as escapes)."""
    if as_json:
        print(json.dumps(json_safe(payload), indent=2, allow_nan=False))
    elif text:  # nothing at all when every image of a batch failed (the errors are on stderr)
        print("\n".join(printable(line) for line in text.split("\n")))


def batch_outcome(results: list[dict]) -> int:
    """The rule for a command given several images: each is tried; the answers are printed, and each image
    that could not be read is also reported on stderr. Exit code 0 when every image was read, 2 otherwise."""
    failed = [entry for entry in results if "error" in entry]
    for entry in failed:
        print(printable(f"error: {entry['image']}: {entry['error']}"), file=sys.stderr)
    return 2 if failed else 0


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
        outliers=args.outliers,
        seed=args.seed,
        holdout=args.holdout,
        device=args.device,
        precision=args.precision,
    )
    data = load_mnist()
    if args.submit:
        return submit_training(args, config, data)
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


def submit_training(args: argparse.Namespace, config, data) -> int:
    """`train --submit`: queue the run for the app's training worker instead of training here."""
    from .jobs import JobBoard, JobRequest, jobs_folder, worker_running

    if args.test_limit:
        raise UserError("--test-limit is not available with --submit: queued runs are scored on the whole test set")
    validate_run_name(args.name)
    if RunStore().exists(args.name) and not args.overwrite:
        raise name_taken(args.name)
    available = len(data.train_labels) - config.holdout
    if available <= 0:
        raise UserError(f"--holdout {config.holdout} leaves no training digits of the {len(data.train_labels):,}")
    request = JobRequest(
        args.name,
        config.as_dict(),
        owner="command-line",
        owner_label="the command line",
        train_images=min(args.train_limit or available, available),
        overwrite=args.overwrite,
    )
    board = JobBoard(jobs_folder())
    job = board.submit(request)
    position, seconds = board.estimates()[job.id]
    served = (
        ""
        if worker_running(board.folder)
        else ("; no worker is running: `streamlit run app.py` starts one, or run `python -m ocr_core worker`")
    )
    print(
        f"queued {args.name} as job {job.id} (number {position} in the queue, start in ~{seconds / 60:.0f} min){served}"
    )
    return 0


def command_worker(args: argparse.Namespace) -> int:
    """Serve the training queue in the foreground until Ctrl-C (the app starts its own worker otherwise)."""
    from .jobs import jobs_folder, serve, worker_count, worker_running

    folder = jobs_folder()
    if worker_running(folder):
        raise UserError(f"a worker is serving {folder} already")
    return serve(folder, args.workers or worker_count())


def command_evaluate(args: argparse.Namespace) -> int:
    store = RunStore()
    model, metadata = store.load(args.name)
    if args.writer is not None:
        return evaluate_on_writer(args, model, metadata)
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


def evaluate_on_writer(args: argparse.Namespace, model, metadata: RunMetadata) -> int:
    """`evaluate RUN --writer NAME`: the run on every sample of one writer, beside its MNIST test accuracy."""
    result = score_writer(model, args.writer)
    payload = {"name": args.name, "writer": args.writer, **result.summary(), "mnist_accuracy": metadata.metric("clean")}
    per_digit = "  ".join(f"{d}: {'-' if a is None else f'{a:.0%}'}" for d, a in enumerate(payload["per_digit"]))
    lines = [
        f"{args.name} on {args.writer}'s {payload['count']} samples: accuracy {result.accuracy:.4f}, "
        f"{payload['errors']} errors (MNIST test accuracy {metadata.metric('clean'):.4f})",
        f"per digit: {per_digit}",
    ]
    lines += [
        f"  sample {m['sample']}: a {m['label']} read as {m['predicted']} ({m['confidence']:.1%})"
        for m in payload["mistakes"]
    ]
    emit(payload, args.json, "\n".join(lines))
    return 0


def command_samples_add(args: argparse.Namespace) -> int:
    """Images as `predict` takes them: each is decoded and prepared, and refused one by one when it cannot
    be a digit; the others are stored."""
    store, added, failures = SampleStore(), 0, 0
    label, writer = validate_label(args.label), validate_writer(args.writer)
    for path in args.images:
        try:
            store.add_image(writer, label, load_image(path), "upload")
            added += 1
        except ImageError as error:
            failures += 1
            print(f"{path}: error: {error}", file=sys.stderr)
    print(f"added {added} sample(s) of {label} for {writer} ({store.count(writer)} in all)")
    return 1 if failures else 0


def command_samples_list(args: argparse.Namespace) -> int:
    store = SampleStore()
    writers = store.writers()
    if args.writer is not None:
        writers = [summary for summary in writers if summary.writer == args.writer]
        if not writers:
            raise UserError(f"no samples of writer {args.writer!r} in {store.path}")
    payload = [{"writer": w.writer, "count": w.count, "per_digit": list(w.per_digit), "last": w.last} for w in writers]
    if args.writer is not None and args.json:
        payload[0]["samples"] = [
            {"id": s.id, "label": s.label, "source": s.source, "created": s.created} for s in store.samples(args.writer)
        ]
    lines = [f"{'writer':<24} {'samples':>7}  per digit 0-9"]
    lines += [f"{w['writer']:<24} {w['count']:>7}  {' '.join(map(str, w['per_digit']))}" for w in payload]
    emit(payload, args.json, "\n".join(lines) if payload else f"no samples yet ({store.path})")
    return 0


def command_samples_export(args: argparse.Namespace) -> int:
    payload = SampleStore().export_zip(args.writer)
    try:
        with atomic_path(Path(args.out).resolve(), overwrite=True) as temporary:
            temporary.write_bytes(payload)
    except OSError as error:
        raise UserError(f"cannot write {args.out}: {error.strerror or error}") from None
    print(f"exported {args.writer}'s samples to {args.out} ({len(payload) / 1e3:.0f} kB)")
    return 0


def command_samples_import(args: argparse.Namespace) -> int:
    try:
        payload = Path(args.file).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {args.file}: {error.strerror or error}") from None
    result = SampleStore().import_zip(payload, args.writer)
    for skipped in result.skipped:
        print(f"skipped {skipped}", file=sys.stderr)
    print(f"imported {result.added} sample(s) for {result.writer}")
    return 0


def command_samples_delete(args: argparse.Namespace) -> int:
    deleted = SampleStore().delete_writer(args.writer)
    if not deleted:
        raise UserError(f"no samples of writer {args.writer!r}")
    print(f"deleted {deleted} sample(s) of {args.writer}")
    return 0


def figures_line(label: str, figures: dict) -> str:
    return (
        f"{label:<7} own held-out digits {figures['own_accuracy']:.2%} ({figures['own_count']}), "
        f"MNIST test {figures['mnist_accuracy']:.2%}"
    )


def command_personalise(args: argparse.Namespace) -> int:
    def report(fraction: float, message: str) -> None:
        if not args.json:
            print(f"{fraction:4.0%} {message}", file=sys.stderr)

    result = personalise(args.name, args.writer, args.new_name, layers=args.layers, steps=args.steps, progress=report)
    payload = result.summary()
    lines = [
        f"saved {payload['name']} ({result.info.path}): {payload['parent']} fine-tuned ({payload['layers']}) on "
        f"{payload['samples_trained']} of {args.writer}'s samples in {payload['seconds']:.1f}s",
        figures_line("before", payload["before"]),
        figures_line("after", payload["after"]),
    ]
    lines += [f"  sample {c['sample']}: a {c['label']}, read {c['before']} -> {c['after']}" for c in payload["changed"]]
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
    if entry["prediction"] is None:
        return f"{entry['image']}: not a digit: {entry['problem']}"
    confidence = f"{entry['confidence']:.1%}{'' if entry['calibrated'] else ', not calibrated'}"
    if entry["looks_like_digit"] is False:
        return f"{entry['image']}: does not look like a digit (closest: {entry['prediction']}, {confidence})"
    return f"{entry['image']}: {entry['prediction']} ({confidence})"


def command_predict(args: argparse.Namespace) -> int:
    model, metadata = RunStore().load(args.name)
    calibration = calibration_of(metadata)
    results = []
    for path in args.images:
        try:
            results.append(predict_entry(path, model, calibration))
        except ImageError as error:
            results.append({"image": path, "error": str(error)})
    emit(results, args.json, "\n".join(predict_line(entry) for entry in results if "error" not in entry))
    return batch_outcome(results)


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
    if entry.get("problem"):
        return f"{entry['image']}: (nothing read: {entry['problem']})"
    strange = [str(index + 1) for index, digit in enumerate(entry["digits"]) if digit["looks_like_digit"] is False]
    note = f" (? = character {', '.join(strange)} from the left does not look like a digit)" if strange else ""
    text = " / ".join(entry["lines"])  # several lines of writing, from the top
    return f"{entry['image']}: {text or '(no digits found)'}{note}"


def command_read(args: argparse.Namespace) -> int:
    model, metadata = RunStore().load(args.name)
    model, calibration = folded_for_inference(model), calibration_of(metadata)
    pair_model = None if args.no_pairs else shipped_pair_reader()
    results = []
    for path in args.images:
        try:
            reading = read_number(load_image(path, max_side=READ_SIDE), model, calibration, pair_model)
        except ImageError as error:
            results.append({"image": path, "error": str(error)})
            continue
        results.append(
            {
                "image": path,
                "text": reading.text,
                "lines": reading.lines,
                "separators": [
                    {"character": mark.character, "box": list(mark.box), "line": mark.line}
                    for mark in reading.marks
                    if mark.character
                ],
                "problem": reading.problem,
                "digits": [
                    {
                        "character": digit.character,
                        "digit": None if digit.looks_like_digit is False else digit.digit,
                        "closest_digit": digit.digit,
                        "confidence": round(digit.confidence, 6),
                        "box": list(digit.box),
                        "looks_like_digit": digit.looks_like_digit,
                        "pair": digit.pair,
                        "line": digit.line,
                    }
                    for digit in reading.digits
                ],
            }
        )
    emit(results, args.json, "\n".join(read_line(entry) for entry in results if "error" not in entry))
    return batch_outcome(results)


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
                accuracy=run.metric(CLEAN_TEST),
                seed_augmented_accuracy=run.metric(AUGMENTED_TEST),
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


def command_export(args: argparse.Namespace) -> int:
    from .export import export_onnx  # the exporter's packages are optional: imported when asked for

    model, metadata = RunStore().load(args.name)
    out = export_onnx(args.name, model, metadata, args.out, overwrite=args.overwrite)
    print(f"exported {args.name} to {out} ({out.stat().st_size:,} bytes, {args.format})")
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
        labels=data.train_labels,
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


def recipe_default(field: str) -> str:
    """The recipes' values of a TrainConfig field, for an option's help: "default per recipe: fast=1, …"."""
    values = {name: getattr(recipe, field) for name, recipe in RECIPES.items()}
    shown = {name: f"{value:g}" if isinstance(value, float) else str(value) for name, value in values.items()}
    if len(set(shown.values())) == 1:
        return f"default: {next(iter(shown.values()))} in every recipe"
    return "default per recipe: " + ", ".join(f"{name}={value}" for name, value in shown.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ocr_core", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model and save it as a run")
    train.add_argument("--name", required=True, help=f"run name: {NAME_RULE}")
    train.add_argument(
        "--recipe",
        choices=RECIPES,
        default="fast",
        help="starting settings, which the options below override: fast (~99%% in seconds), tutorial (the "
        "PyTorch tutorial's), robust (robust in about a minute), best (the shipped best run's) (default: %(default)s)",
    )
    train.add_argument("--model", choices=ARCHITECTURES, help=f"architecture ({recipe_default('architecture')})")
    train.add_argument("--epochs", type=float, help=f"epochs to train, fractions allowed ({recipe_default('epochs')})")
    train.add_argument("--batch-size", type=int, help=f"images per optimizer step ({recipe_default('batch_size')})")
    train.add_argument(
        "--lr", type=float, help=f"learning rate, the peak rate under onecycle ({recipe_default('learning_rate')})"
    )
    train.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimizer ({recipe_default('optimizer')})")
    train.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help=f"learning-rate schedule: constant, or onecycle's warm-up and decay ({recipe_default('schedule')})",
    )
    train.add_argument(
        "--weight-decay", type=float, help=f"weight decay, decoupled under adamw ({recipe_default('weight_decay')})"
    )
    train.add_argument(
        "--label-smoothing",
        type=float,
        help=f"share of each target spread over the other classes ({recipe_default('label_smoothing')})",
    )
    train.add_argument(
        "--augment",
        help=f"preset ({', '.join(PRESETS)}) or spec like rotate=15,translate=0.1 ({recipe_default('augment')}); "
        f"ops and ranges: {ranges_text()}",
    )
    train.add_argument(
        "--ema",
        type=float,
        help=f"decay of an average of the weights that is scored and saved, e.g. 0.999; 0: off "
        f"({recipe_default('ema_decay')})",
    )
    train.add_argument(
        "--outliers",
        type=float,
        help="outlier exposure: this share of each batch again in drawings that are not digits, their answer "
        f"pushed towards uniform, e.g. 0.25; 0: off ({recipe_default('outliers')})",
    )
    train.add_argument(
        "--seed", type=int, help=f"seed of the weights, data order and augmentation ({recipe_default('seed')})"
    )
    train.add_argument("--device", help=f"auto, cpu, cuda or mps ({recipe_default('device')})")
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (bf16 mixed precision where the hardware computes bf16 natively, else fp32), fp32 or bf16 "
        f"({recipe_default('precision')})",
    )
    train.add_argument(
        "--holdout",
        type=int,
        help="keep the last N training images out of training, for calibration; 0: train on all, uncalibrated "
        f"({recipe_default('holdout')})",
    )
    train.add_argument(
        "--train-limit",
        type=int,
        help="train on the first N training images only, the holdout being the images after them (default: all)",
    )
    train.add_argument("--test-limit", type=int, help="use only the first N test images (default: all)")
    train.add_argument("--overwrite", action="store_true", help="replace a run with the same name (default: refuse to)")
    train.add_argument(
        "--submit",
        action="store_true",
        help="queue the run for the app's training worker (default: train in this process)",
    )
    train.set_defaults(handler=command_train)

    worker = commands.add_parser(
        "worker", help="serve the training queue in the foreground (the app starts one itself)"
    )
    worker.add_argument("--workers", type=int, help="trainings side by side (default: OCR_TRAINING_WORKERS, else 1)")
    worker.set_defaults(handler=command_worker)

    evaluate_parser = commands.add_parser("evaluate", help="score a run on the (optionally augmented) test set")
    evaluate_parser.add_argument("name", help="a saved run")
    evaluate_parser.add_argument(
        "--augment", default="none", help="transform the test set first, preset or spec (default: %(default)s)"
    )
    evaluate_parser.add_argument("--test-limit", type=int, help="score only the first N test images (default: all)")
    evaluate_parser.add_argument(
        "--json",
        action="store_true",
        help="print accuracy, loss, per-class metrics and confusion as JSON (default: plain text)",
    )
    evaluate_parser.add_argument(
        "--writer",
        help="score on this writer's own samples (see `samples`) instead of the MNIST test set (default: MNIST)",
    )
    evaluate_parser.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="read digits from image files")
    predict.add_argument("name", help="a saved run")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files of one digit, either polarity")
    predict.add_argument("--json", action="store_true", help="print each image's reading as JSON (default: plain text)")
    predict.set_defaults(handler=command_predict)

    calibrate = commands.add_parser(
        "calibrate", help="fit calibrated confidence and the not-a-digit flag on a run's held-out digits"
    )
    calibrate.add_argument("names", nargs="+", metavar="NAME", help="saved runs trained with held-out digits")
    calibrate.set_defaults(handler=command_calibrate)

    read = commands.add_parser("read", help="read handwritten numbers (several digits) from image files")
    read.add_argument("name", help="a saved run")
    read.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files of a written number")
    read.add_argument(
        "--json", action="store_true", help="print each digit with its box and confidence as JSON (default: plain text)"
    )
    read.add_argument(
        "--no-pairs",
        action="store_true",
        help="do not read wide glyphs as two touching digits, only cut them (default: the pair reader reads them)",
    )
    read.set_defaults(handler=command_read)

    train_pairs = commands.add_parser(
        "train-pairs", help="train the pair reader (two touching digits read as one glyph) on MNIST training digits"
    )
    train_pairs.add_argument(
        "--out", type=Path, default=Path("pair_reader.safetensors"), help="file to write (default: %(default)s)"
    )
    train_pairs.add_argument("--samples", type=int, default=150_000, help="glyphs to compose (default: 150,000)")
    train_pairs.add_argument(
        "--epochs", type=int, default=PairTraining.epochs, help="epochs to train (default: %(default)s)"
    )
    train_pairs.add_argument(
        "--seed", type=int, default=PairTraining.seed, help="seed of the glyphs and the weights (default: %(default)s)"
    )
    train_pairs.set_defaults(handler=command_train_pairs)

    listing = commands.add_parser("list", help="list saved runs")
    listing.add_argument(
        "--json",
        action="store_true",
        help="print each run's name, architecture and accuracies as JSON (default: plain text)",
    )
    listing.set_defaults(handler=command_list)

    info = commands.add_parser("info", help="print a run's metadata (JSON)")
    info.add_argument("name", help="a saved run")
    info.set_defaults(handler=command_info)

    robustness = commands.add_parser(
        "robustness", help="accuracy under the corruption suite (MNIST-C style), per corruption and severity"
    )
    robustness.add_argument("names", nargs="+", metavar="NAME", help="saved runs")
    robustness.add_argument(
        "--severity",
        choices=[*map(str, SEVERITIES), "all"],
        default=str(DEFAULT_SEVERITY),
        help=f"severity 1-5 (default {DEFAULT_SEVERITY}, the reference's strength) or all",
    )
    robustness.add_argument(
        "--json",
        action="store_true",
        help="print per run: corruption -> severity -> accuracy (fractions), mean, mCE, clean as JSON "
        "(default: a table)",
    )
    robustness.add_argument(
        "--recompute",
        action="store_true",
        help="score again, ignoring shipped and cached reports (default: reuse them)",
    )
    robustness.set_defaults(handler=command_robustness)

    rescore = commands.add_parser("rescore", help="score a run again on today's test sets and update its metrics")
    rescore.add_argument("name", help="a saved run")
    rescore.set_defaults(handler=command_rescore)

    rename = commands.add_parser("rename", help="rename a run")
    rename.add_argument("old", help="a saved run")
    rename.add_argument("new", help=f"its new name: {NAME_RULE}")
    rename.set_defaults(handler=command_rename)

    delete = commands.add_parser("delete", help="delete a run")
    delete.add_argument("name", help="a saved run")
    delete.set_defaults(handler=command_delete)

    export = commands.add_parser(
        "export", help="write a run as one self-contained ONNX file (needs requirements-export.txt)"
    )
    export.add_argument("name", help="the run to export")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="file format (default: onnx)")
    export.add_argument("--out", type=Path, required=True, help="the file to write, e.g. best.onnx")
    export.add_argument("--overwrite", action="store_true", help="replace the file if it exists (default: refuse to)")
    export.set_defaults(handler=command_export)

    models = commands.add_parser("models", help="list architectures with size and compute")
    models.add_argument(
        "--json", action="store_true", help="print parameters and multiply-adds as JSON (default: plain text)"
    )
    models.set_defaults(handler=command_models)

    preview = commands.add_parser("preview", help="save a PNG grid of augmented training digits")
    preview.add_argument("--augment", default="recommended", help="preset or spec (default: %(default)s)")
    preview.add_argument("--output", default="augment-preview.png", help="PNG file to write (default: %(default)s)")
    preview.add_argument(
        "--seed", type=int, default=0, help="seed of the digits and the augmentation (default: %(default)s)"
    )
    preview.add_argument("--rows", type=int, default=4, help="rows of digits (default: %(default)s)")
    preview.add_argument("--columns", type=int, default=8, help="digits per row (default: %(default)s)")
    preview.add_argument(
        "--variants", action="store_true", help="each row: variants of one digit (default: different digits)"
    )
    preview.set_defaults(handler=command_preview)

    explain = commands.add_parser("explain", help="save PNGs of what a run sees in an image and why it answers")
    explain.add_argument("name", help="a saved run")
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
    add_sample_commands(commands)
    return parser


def add_sample_commands(commands) -> None:
    """`samples add|list|export|import|delete` and `personalise`."""
    writer_help = f"writer name: {WRITER_RULE}"
    samples = commands.add_parser(
        "samples", help="your own handwritten digits: add, list, export, import, delete (SQLite, OCR_SAMPLES_DB)"
    )
    verbs = samples.add_subparsers(dest="verb", required=True, help="what to do with the samples")
    add = verbs.add_parser("add", help="store images of one digit as samples (images as `predict` takes them)")
    add.add_argument("--writer", required=True, help=writer_help)
    add.add_argument("--label", required=True, metavar="D", help="the digit, 0-9")
    add.add_argument("images", nargs="+", metavar="IMAGE", help="image files of that digit, as `predict` reads them")
    add.set_defaults(handler=command_samples_add)
    listing = verbs.add_parser("list", help="writers and their samples per digit")
    listing.add_argument("--writer", help="only this writer, with each sample (default: every writer)")
    listing.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    listing.set_defaults(handler=command_samples_list)
    export = verbs.add_parser("export", help="a zip of a writer's samples: one folder per digit, labels.csv")
    export.add_argument("--writer", required=True, help=writer_help)
    export.add_argument("out", metavar="OUT.zip", help="the zip to write (replaced if it exists)")
    export.set_defaults(handler=command_samples_export)
    imported = verbs.add_parser("import", help="add the samples of an exported zip (or folders 0-9 of images)")
    imported.add_argument("file", metavar="FILE.zip", help="a zip written by `samples export`, or of folders 0-9")
    imported.add_argument("--writer", help="store them under this writer (default: the one labels.csv names)")
    imported.set_defaults(handler=command_samples_import)
    delete = verbs.add_parser("delete", help="delete every sample of a writer")
    delete.add_argument("--writer", required=True, help=writer_help)
    delete.set_defaults(handler=command_samples_delete)

    personal = commands.add_parser(
        "personalise", help="fine-tune a run on a writer's samples (MNIST replayed) and save it as a new run"
    )
    personal.add_argument("name", metavar="RUN", help="the saved run to start from (it is left unchanged)")
    personal.add_argument("--writer", required=True, help=writer_help)
    personal.add_argument("--name", dest="new_name", required=True, metavar="NEW", help=f"the new run: {NAME_RULE}")
    personal.add_argument(
        "--layers", choices=LAYERS, default=DEFAULT_LAYERS, help=f"what to fine-tune (default {DEFAULT_LAYERS})"
    )
    personal.add_argument("--steps", type=int, default=STEPS, help=f"fine-tuning steps (default {STEPS})")
    personal.add_argument("--json", action="store_true", help="print before/after as JSON (default: text)")
    personal.set_defaults(handler=command_personalise)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:  # anything else is a bug and keeps its traceback
        print(printable(f"error: {error}"), file=sys.stderr)
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
