"""Smoke test of the Inside the network benchmark on tiny synthetic data: every figure is printed and sane.
No timing assertions: the targets are read from `python -m bench`'s table."""

from __future__ import annotations

from dataclasses import replace

from conftest import tiny_mnist

from bench import run


def test_explain_rows_report_every_figure():
    rows = run.explain_rows(tiny_mnist(train=256, test=64), replace(run.QUICK, latency_repeats=4), with_app=False)
    measured = {row.measurement.split(",")[0]: row for row in rows}
    assert {
        "explain one drawing",
        "feature index build",
        "test-set map build (PCA)",
        "similar training digits (8 nearest) once the index exists",
        "a drawing placed on the map",
    } <= set(measured)
    assert all(row.ours.endswith(("ms", " s", "axes)")) for row in rows)
    assert {row.target for row in rows} >= {"≤ 150 ms", "≤ 1 s", "≤ 50 ms"}
