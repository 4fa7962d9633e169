"""Which runs the Evaluate page compares: the visitor's choice, kept across visits, with new runs added."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ocr_core import RunInfo

from .widgets import ACTIVE_RUN

CHOSEN_RUNS = "evaluate.runs"  # session key of the run picker
KNOWN_RUNS = "evaluate.known_runs"  # session key: the runs there were at the last visit
DEFAULT_SELECTION = 4  # runs picked on the first visit when there are this many or fewer


def selected_runs(runs: list[RunInfo], state: MutableMapping[str, Any]) -> list[str]:
    """The runs to compare: the visitor's choice, plus every run saved since the last visit (a run just
    trained is there to see); on the first visit all runs, or when there are many, the chosen model and the
    newest runs (DEFAULT_SELECTION in all)."""
    names = [run.name for run in runs]
    known = state.get(KNOWN_RUNS)
    state[KNOWN_RUNS] = names
    if CHOSEN_RUNS not in state:
        if len(names) <= DEFAULT_SELECTION:
            return names
        newest = [run.name for run in sorted(runs, key=lambda run: run.modified, reverse=True)]
        return [name for name in dict.fromkeys([state.get(ACTIVE_RUN), *newest]) if name in names][:DEFAULT_SELECTION]
    chosen = [name for name in state[CHOSEN_RUNS] if name in names]
    return chosen + [name for name in names if known is not None and name not in known and name not in chosen]
