"""Exception hierarchy of rella-hf.

Every error subclasses :class:`RellaError`, itself a :class:`ValueError`, so callers that already
catch ``ValueError`` keep working and the CLI can turn any of them into a one-line message.
"""

from __future__ import annotations


class RellaError(ValueError):
    """Base class of every error rella-hf raises on purpose."""


class DataFormatError(RellaError):
    """A raw corpus file does not have the expected format.

    The message names the file, the 1-based line number (when one applies) and what was expected.
    """

    def __init__(self, path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class DownloadError(RellaError):
    """A corpus could not be downloaded or did not match its published checksum."""


class ConfigError(RellaError):
    """A configuration value is out of range or inconsistent with another one."""


class ModelError(RellaError):
    """A model or tokenizer cannot be used the way rella-hf needs (e.g. ambiguous yes/no tokens)."""


class PublishError(RellaError):
    """A dataset or adapter cannot be exported or uploaded as asked (missing files, mixed corpora, a token in a file)."""


class RedistributionError(PublishError):
    """The source corpus's licence does not allow redistribution and no permission was asserted."""


class MetricError(RellaError):
    """Labels or scores cannot be evaluated (wrong shape, values out of range, a single class for AUC)."""
