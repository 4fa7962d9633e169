"""What visitors of the app may do to saved runs. A shared server (a classroom, Community Cloud) serves every
visitor the same run folder, so by default nobody can rename, delete or replace the shipped runs; a public
deployment can switch run management off altogether. The CLI is the owner's tool and is not limited."""

from __future__ import annotations

import os

import streamlit as st

from ocr_core.runs import SHIPPED_RUNS

SETTING = "OCR_RUN_MANAGEMENT"  # an environment variable, or a top-level key in .streamlit/secrets.toml
LEVELS = {
    "full": "visitors may rename, delete, upload and replace any run, the shipped ones included",
    "protected": "visitors may rename, delete, upload and replace runs, except the shipped ones",
    "off": "visitors may train new runs and download runs, but not rename, delete, upload or replace any",
}
DEFAULT_LEVEL = "protected"
UNKNOWN_LEVEL = "off"  # a mistyped setting on a public server must not open it up


def configured_level(setting: str = SETTING) -> str | None:
    """A setting as written (the environment first, then the secrets), or None when it is not set."""
    value = os.environ.get(setting)
    if value is None and st.secrets.load_if_toml_exists():
        value = st.secrets.get(setting)
    return None if value is None else str(value).strip().lower()


def level_of(setting: str, levels: dict[str, str], default: str) -> str:
    """A server setting's level: `default` when it is not set, UNKNOWN_LEVEL when it is not one of `levels`."""
    configured = configured_level(setting)
    if configured is None:
        return default
    return configured if configured in levels else UNKNOWN_LEVEL


def management_level() -> str:
    return level_of(SETTING, LEVELS, DEFAULT_LEVEL)


def refusal(name: str) -> str | None:
    """Why visitors may not rename, delete or replace run `name` (or take its name), or None if they may."""
    level = management_level()
    if level == "off":
        return "run management is switched off on this server"
    if level == "protected" and name in SHIPPED_RUNS:
        return f"`{name}` is one of the shipped runs ({', '.join(SHIPPED_RUNS)}), which this server protects"
    return None


def describe_policy() -> str:
    """One line for the Manage runs tab: what is allowed here, and where that is set."""
    configured, level = configured_level(), management_level()
    if configured is None:
        source = f"the default; `{SETTING}` can be {', '.join(LEVELS)}"
    elif configured in LEVELS:
        source = f"`{SETTING}={configured}`"
    else:
        source = f"`{SETTING}={configured}` is not one of {', '.join(LEVELS)}, so run management is off"
    return f"On this server {LEVELS[level]} ({source}; see docs/deploy.md)."
