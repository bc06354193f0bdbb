"""Exception hierarchy of rella-hf.

Every error subclasses :class:`RellaError`, so the CLI can turn any of them into a one-line message.
Errors about a value that was given (a file's format, a config value, a model, a metric input, a
publication) are also :class:`ValueError`, so callers that catch ``ValueError`` keep working;
:class:`DownloadError` is not a wrong value but a failed fetch, and is an :class:`OSError` like the
network and disk errors it stands for.
"""

from __future__ import annotations

#: Longest value an error message quotes; longer ones keep their start and say how long they were.
VALUE_LIMIT = 60
_LONG_WORD = 120


def shorten(value, limit: int = VALUE_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long the value was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value)):,} characters)"


def _clip(message: str) -> str:
    """Clip any whitespace-free run longer than a path could sensibly be (e.g. a 200 KB bad field)."""
    if len(message) <= 4 * _LONG_WORD:
        return message
    words = message.split(" ")
    message = " ".join(word if len(word) <= _LONG_WORD else f"{word[:VALUE_LIMIT]}... ({len(word):,} characters)"
                       for word in words)
    if len(message) > 8 * _LONG_WORD:  # a long value made of short words: keep the start and the expectation
        message = f"{message[:5 * _LONG_WORD]} ... {message[-2 * _LONG_WORD:]}"
    return message


class RellaError(Exception):
    """Base class of every error rella-hf raises on purpose.

    The message is kept to one readable line: overlong values inside it are clipped.
    """

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            args = (_clip(args[0]),)
        super().__init__(*args)


class DataFormatError(RellaError, ValueError):
    """A raw corpus file does not have the expected format.

    The message names the file, the 1-based line number (when one applies) and what was expected.
    """

    def __init__(self, path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.detail = message  # the message without its "path, line N: " prefix
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class DownloadError(RellaError, OSError):
    """A corpus could not be downloaded or did not match its published checksum (an ``OSError``, not a ``ValueError``)."""


class ConfigError(RellaError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class ModelError(RellaError, ValueError):
    """A model or tokenizer cannot be used the way rella-hf needs (e.g. ambiguous yes/no tokens)."""


class PublishError(RellaError, ValueError):
    """A dataset or adapter cannot be exported or uploaded as asked (missing files, mixed corpora, a token in a file)."""


class RedistributionError(PublishError):
    """The source corpus's licence does not allow redistribution and no permission was asserted."""


class MetricError(RellaError, ValueError):
    """Labels or scores cannot be evaluated (wrong shape, values out of range, a single class for AUC)."""
