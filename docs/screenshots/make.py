"""Screenshots of the pages, and the app's cold-start time, from a real browser.

    OCR_DATA_DIR=/path/to/data python docs/screenshots/make.py [read|robustness|my-digits]

(`read`, `robustness`, `train`, `my-digits`: only that page's screenshots; `my-digits` first stores 30 digits of a
synthetic writer, bench/writers.py's `continental`, and personalises `best` on them, which takes a minute.)

Uses the shipped runs (copied to a temp dir, so the demo training leaves nothing behind) and real MNIST;
needs Debian's chromium at /usr/bin/chromium and the Python playwright package."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent.parent / "tests")]

from browser_session import (  # noqa: E402  (after the sys.path line above)
    PROJECT_DIR,
    SEVEN,
    TOUCHING_2026,
    TWENTY_TWENTY_SIX,
    browser_page,
    draw,
    metric_value,
    prediction,
    streamlit_server,
    wait_until_idle,
)


def shoot(page, name: str, height: int, idle: bool = True, width: int = 1400) -> None:
    page.set_viewport_size({"width": width, "height": height})
    page.mouse.move(0, height - 1)  # no hover tooltips in the picture
    if idle:
        wait_until_idle(page)
    page.wait_for_timeout(800)  # charts fade in
    page.screenshot(path=str(HERE / f"{name}.png"))
    print(f"wrote {HERE / name}.png")


def train_demo(page) -> None:
    """Two epochs on 10,000 images with the recommended augmentation: the form, the live view, the result."""
    page.get_by_role("link", name="Train").click()
    page.get_by_role("textbox", name="Run name").fill("demo")
    page.get_by_role("textbox", name="Run name").press("Enter")
    wait_until_idle(page)
    page.get_by_role("radio", name="recommended", exact=True).click()
    wait_until_idle(page)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Training images").click()
    page.get_by_role("option", name="first 10,000 (quick demo)").click()
    wait_until_idle(page)
    page.get_by_role("spinbutton", name="Epochs").fill("2")
    page.get_by_role("spinbutton", name="Epochs").press("Enter")
    shoot(page, "train", 1250)
    page.get_by_role("button", name="Start training").click()
    # (the live view, with the queue, is bench/train_queue.py --screenshots' train-queue.png: this run is too quick)
    page.get_by_text("Saved run").wait_for(timeout=900_000)
    shoot(page, "train-result", 1000)


CROSS = [[(735, 70), (825, 225)], [(825, 70), (735, 225)]]


def read_demo(page) -> None:
    """ "2026" written on the Read page, with its boxes, crops and pipeline; then a cross after it."""
    page.get_by_role("link", name="Read").click()
    page.get_by_text("Write a number on the black canvas").wait_for(timeout=60_000)
    draw(page, TWENTY_TWENTY_SIX)
    wait_until_idle(page)
    print(f"written 2026 read as {metric_value(page, 'Reading')}")
    shoot(page, "read", 1700)
    draw(page, CROSS)  # after the number: ink that is no digit, flagged by the run's calibration
    page.get_by_text("does not look like a digit").first.wait_for(timeout=60_000)
    wait_until_idle(page)
    shoot(page, "read-not-a-digit", 1250)
    page.get_by_role("button", name="Reset canvas & history").click()
    page.get_by_text("Write a number on the black canvas").wait_for(timeout=60_000)
    draw(page, TOUCHING_2026)
    page.get_by_text("Touching digits read whole").first.wait_for(timeout=60_000)
    print(f"written 2026 with the 2 and 0 touching read as {metric_value(page, 'Reading')}")
    page.get_by_text("Touching digits read whole").first.evaluate("text => text.scrollIntoView({block: 'center'})")
    shoot(page, "read-touching", 1250)


def robustness_demo(page) -> None:
    """The tutorial experiment on the Robustness page: summary, heatmap, severity curves, the digit strip."""
    page.get_by_role("link", name="Robustness").click()
    page.get_by_text("Sort corruptions").wait_for(timeout=300_000)
    shoot(page, "robustness", 1500)
    page.get_by_role("tab", name="What each corruption looks like").click()
    page.get_by_text("severity 5").first.wait_for(timeout=300_000)
    page.get_by_role("tab", name="What each corruption looks like").evaluate(
        "tab => tab.scrollIntoView({block: 'start'})"
    )
    shoot(page, "robustness-strip", 1100)


WRITER = "ada"


def prepare_writer(runs: Path, samples: Path) -> None:
    """30 digits (3 of each) of the synthetic `continental` writer in a fresh store, and `best-ada`."""
    from bench.writers import WRITERS, pick_per_digit, writer_digits
    from ocr_core import RunStore, load_mnist
    from ocr_core.personal import personalise
    from ocr_core.samples import SampleStore

    data = load_mnist()
    images, labels = data.train_images[-5000:].numpy(), data.train_labels[-5000:].numpy()
    chosen = pick_per_digit(labels, 3)
    store = SampleStore(samples)
    for digit, label, drawing in zip(*writer_digits(WRITERS[0], images[chosen], labels[chosen]), strict=True):
        store.add(WRITER, int(label), digit, drawing, "canvas")
    result = personalise("best", WRITER, f"best-{WRITER}", RunStore(runs), store, data)
    print(f"personalised best-{WRITER}: {result.before.accuracy:.0%} -> {result.after.accuracy:.0%} held out")


def my_digits_demo(page) -> None:
    """My digits for writer ada: collecting, the runs on her digits, before/after; wide and phone-sized."""
    page.get_by_role("link", name="My digits").click()
    writer = page.get_by_role("textbox", name="Writer")
    writer.fill(WRITER)
    writer.press("Enter")
    page.get_by_text("Samples per digit").wait_for(timeout=60_000)
    wait_until_idle(page)
    draw(page, SEVEN)
    wait_until_idle(page)
    shoot(page, "my-digits", 1100)
    shoot(page, "my-digits-phone", 1500, width=390)
    page.get_by_role("tab", name="How runs read them").click()
    page.get_by_text("Confusion and mistakes of").wait_for(timeout=120_000)
    shoot(page, "my-digits-runs", 1100)
    shoot(page, "my-digits-runs-phone", 1900, width=390)
    page.get_by_role("tab", name="Personalise").click()
    page.get_by_text("Before and after").wait_for(timeout=60_000)
    page.get_by_text("Before and after").evaluate("text => text.scrollIntoView({block: 'start'})")
    shoot(page, "my-digits-personalised", 900)
    shoot(page, "my-digits-personalised-phone", 1500, width=390)


DEMOS = {"read": read_demo, "robustness": robustness_demo, "train": train_demo, "my-digits": my_digits_demo}


def main(only: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(scratch) / "checkpoints"
        shutil.copytree(PROJECT_DIR / "checkpoints", runs)
        samples = Path(scratch) / "samples.sqlite"
        if only in (None, "my-digits"):
            prepare_writer(runs, samples)
        started = time.perf_counter()
        settings = {"OCR_CHECKPOINT_DIR": str(runs), "OCR_SAMPLES_DB": str(samples)}
        with streamlit_server(settings) as server, browser_page() as page:
            url = server.url
            healthy = time.perf_counter()
            page.set_default_timeout(120_000)  # a loaded machine renders the Train page slowly
            page.goto(url)
            if only:
                DEMOS[only](page)
                return
            page.get_by_text("Draw a digit on the black square").wait_for(timeout=120_000)
            rendered = time.perf_counter()
            draw(page, SEVEN)
            print(f"drawn 7 read as {prediction(page)}")
            predicted = time.perf_counter()
            print(
                f"cold start: server healthy after {healthy - started:.1f} s, Draw page ready after "
                f"{rendered - started:.1f} s, first prediction {predicted - rendered:.1f} s after drawing began"
            )
            shoot(page, "draw", 1150)
            read_demo(page)
            page.get_by_role("link", name="Evaluate").click()
            page.get_by_role("button", name="Tutorial experiment").click()
            page.get_by_text("The tutorial's experiment").wait_for(timeout=300_000)
            shoot(page, "evaluate", 1500)
            confusion = page.locator('[data-testid="stVegaLiteChart"]').nth(1)
            confusion.locator("svg g.mark-rect path").nth(4 * 10 + 9).click()  # true 4, read as 9: its mistakes
            page.get_by_text("mistakes; the").first.wait_for(timeout=60_000)
            wait_until_idle(page)
            page.wait_for_timeout(2000)  # the rerun that opens the tab settles
            page.get_by_role("tab", name="Mistakes").evaluate("tab => tab.scrollIntoView({block: 'start'})")
            shoot(page, "evaluate-mistakes", 1000)
            robustness_demo(page)
            my_digits_demo(page)
            train_demo(page)


if __name__ == "__main__":
    main(only=sys.argv[1] if sys.argv[1:] else None)
