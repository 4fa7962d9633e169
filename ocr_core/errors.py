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


def printable(text: str) -> str:
    """`text` safe to show in one line on any terminal or page: control characters (tab, newline, ESC) and the
    undecodable bytes of a file name (surrogate escapes) appear as Python escapes; other characters stay."""
    return "".join(character if character.isprintable() else escaped(character) for character in text)


def escaped(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as os.fsdecode keeps it: shown as that byte
        return f"\\x{code - 0xDC00:02x}"
    return repr(character)[1:-1]
