"""The ``rella-hf`` command line: a thin dispatcher over :mod:`rella_hf.commands`.

Errors are one line without a traceback (``--debug`` shows it); exit codes: 0 ok, 1 failure
(a full disk included), 2 usage or bad input, 130 / 143 stopped by Ctrl-C / SIGTERM (the same command
run again continues: builds and caches are written atomically, scoring keeps its finished shards,
training its checkpoint).
"""

from __future__ import annotations

import errno
import sys
from typing import Optional

from .commands import (
    UsageError,
    cmd_build,
    cmd_calibrate,
    cmd_demo,
    cmd_embed,
    cmd_evaluate,
    cmd_push,
    cmd_report,
    cmd_score,
    cmd_train,
)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


COMMANDS = {
    "build": (cmd_build, "Build a ReLLa prompt dataset (recent or SUBR histories)."),
    "embed": (cmd_embed, "Compute or load cached item embeddings."),
    "score": (cmd_score, "Zero-shot or adapter CTR scores of a split, with metrics."),
    "train": (cmd_train, "ReiT LoRA training from a YAML config (optionally under accelerate)."),
    "calibrate": (cmd_calibrate, "Fit calibration.json (calibrated CTR probabilities) on a validation split."),
    "evaluate": (cmd_evaluate, "Metrics with bootstrap intervals of saved scores."),
    "push": (cmd_push, "Publish a dataset or an adapter on the Hub (or --dry_run)."),
    "report": (cmd_report, "Markdown report with plots from a run folder."),
    "demo": (cmd_demo, "The end-to-end demo on the bundled data and offline model."),
}


def _usage() -> str:
    lines = ["usage: rella-hf <command> [options] [--debug]", "", "commands:"]
    lines += [f"  {name:9s} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "rella-hf <command> --help lists every option with its default."]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``rella-hf``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return EXIT_OK if argv else EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"rella-hf: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    debug = "--debug" in rest
    rest = [token for token in rest if token != "--debug"]
    from .interrupts import exit_code, raise_on_signals

    try:
        with raise_on_signals():  # SIGTERM stops as cleanly as Ctrl-C
            COMMANDS[name][0](rest)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except KeyboardInterrupt as error:
        print(f"rella-hf {name}: {error or 'interrupted by SIGINT'}; run the same command again to continue",
              file=sys.stderr)
        return exit_code(error)
    except Exception as error:  # noqa: BLE001 - the CLI's contract is one line, not a traceback
        if debug:
            raise
        full = disk_full(error)
        if full is not None:
            print(f"rella-hf {name}: error: {full}", file=sys.stderr)
            return EXIT_FAILURE
        mistake = user_mistake(error)
        if mistake is not None:
            print(f"rella-hf {name}: error: {_one_line(mistake)}", file=sys.stderr)
            return EXIT_USAGE
        print(f"rella-hf {name}: error: {type(error).__name__}: {_one_line(str(error))} "
              "(this is a bug in rella-hf or a library; rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


_FILE_MISTAKES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)
#: Library errors that mean bad input, by class name (their modules are not imported for this).
_MISTAKE_CLASSES = {
    "HFValidationError": "not an existing local path, nor a valid Hub repo id 'org/name'",
    "RepositoryNotFoundError": "no such Hub repository (or it is private); check the name or pass a local folder",
    "SafetensorError": "a .safetensors file is corrupt or cut; copy or write it again",
    "YAMLError": "not valid YAML; fix the config file",
}


def user_mistake(error: BaseException) -> Optional[str]:
    """The one-line message of an error caused by the user's input, or None for a bug (exit 1)."""
    from .errors import RellaError

    if isinstance(error, (UsageError, RellaError)):
        return str(error) or type(error).__name__
    if isinstance(error, _FILE_MISTAKES):
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        return f"{where}{error.strerror or error}"
    for kind in type(error).__mro__:
        if kind.__name__ in _MISTAKE_CLASSES:
            return f"{_one_line(str(error))}: {_MISTAKE_CLASSES[kind.__name__]}"
    return None


_DISK_FULL_TEXTS = ("No space left on device", "StorageFull", "os error 28", "Disk quota exceeded")


def disk_full(error: BaseException) -> Optional[str]:
    """The one-line message for an error caused by a full disk (anywhere in its chain), or None.

    Libraries report it as ``OSError(ENOSPC)``, or inside their own errors (safetensors: "StorageFull",
    torch: "file write failed" with the ``OSError`` as its cause).
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
                text in str(error) for text in _DISK_FULL_TEXTS):
            where = getattr(error, "filename", None)
            return (f"no space left on the device{f' (writing {where})' if where else ''}; free some space (or point "
                    "the cache / output folder elsewhere) and run the same command again")
        error = error.__cause__ or error.__context__
    return None


def _one_line(message: str, limit: int = 600) -> str:
    """The first non-empty line of ``message``, at most ``limit`` characters."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else f"{first[:limit]}... ({len(first):,} characters)"


if __name__ == "__main__":
    sys.exit(main())
