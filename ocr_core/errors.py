"""The lab's own error types. A `UserError` is a mistake in what the user asked for or supplied (a config,
an augmentation spec, an image, a run file, missing data): entry points show its message in one line.
Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix; the message is meant for them."""


class ConfigError(UserError):
    """Training settings or an augmentation spec that cannot be used."""


class CheckpointError(UserError):
    """A run that cannot be saved, found or read."""


class ImageError(UserError):
    """An input that cannot be read as a digit image; the message is meant for the user."""
