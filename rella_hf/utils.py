"""Small helpers shared by every layer: the cache folder, content fingerprints, atomic writes and
folders built once (staged, marked complete, locked).

This module imports only the standard library and numpy (``filelock``, a dependency of
``huggingface_hub``, on use) so that any layer may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


def unwrap_adapter(model):
    """The model under a PEFT wrapper (``get_base_model()``), else ``model`` itself.

    Hooks, forward signatures and layer lists live on the underlying causal LM, whether or not an
    adapter wraps it; every layer asks this one function instead of testing for the wrapper itself.
    """
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def cache_root() -> Path:
    """Root folder of rella-hf's caches: ``$RELLA_HF_CACHE`` or ``~/.cache/rella_hf``.

    Read on every call, so setting the environment variable at run time (as tests do) takes effect.
    """
    configured = os.environ.get("RELLA_HF_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "rella_hf"


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside a name by value ("K5" before "K10")."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")


def check_name(value: str, option: str) -> str:
    """Return ``value`` if it is a plain file name (letters, digits, ``._+=-``), so that a name joined
    to an output folder can never point outside it (``../x``, ``/tmp/x``, ``a/b``).

    Raises:
        ConfigError: naming the option and the allowed characters.
    """
    from .errors import ConfigError, shorten

    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{option} {shorten(value)} is not a plain name; expected letters, digits and . _ + = - "
            "(no '/', no '..', at most 128 characters), e.g. K10-semantic"
        )
    return value


def fingerprint(*parts: Any) -> str:
    """Return the sha256 hex digest of JSON-serialisable ``parts``.

    JSON with sorted keys is unambiguous (strings are quoted and escaped), so two different
    argument lists never serialise to the same bytes.

    Args:
        parts: values made of str, int, float, bool, None, lists and dicts.
    """
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _atomic_write(path: Path, write) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path`` and move it into place.

    The temporary file lives in the same folder so ``os.replace`` is an atomic rename: readers see
    either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save ``array`` as a ``.npy`` file atomically (temporary file, then ``os.replace``).

    Args:
        path: destination file, ``.npy`` included; parent folders are created.
        array: the array to save (object arrays are refused, as ``np.load`` would need pickle).
    """
    return _atomic_write(Path(path), lambda handle: np.save(handle, np.asarray(array), allow_pickle=False))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        path: destination file; parent folders are created.
        data: the content.
    """
    return _atomic_write(Path(path), lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        path: destination file; parent folders are created.
        text: the content.
    """
    return _atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def build_folder_once(target: str | os.PathLike, marker: str, build: Callable[[Path], dict]) -> Path:
    """Build the folder ``target`` once and return it; a folder without its ``marker`` file never counts.

    ``build(staged)`` writes the folder's files into ``staged``, a path inside a private scratch folder
    beside ``target`` (the scratch folder's other entries are free for temporaries), and returns the
    marker's content. The marker is written last, then the staged folder is renamed into place, under a
    file lock (``.<name>.lock`` beside ``target``), so concurrent processes (``accelerate launch``)
    build it once and none ever reads a partial folder. A failed or interrupted build (a full disk,
    Ctrl-C) leaves only its scratch folder's removal behind; the next call builds again.

    Args:
        target: the folder to build.
        marker: name of the file inside ``target`` that marks it complete (JSON).
        build: ``staged -> marker content`` (a JSON-serialisable dict).
    """
    from filelock import FileLock

    target = Path(target)
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / marker).is_file():  # another process finished meanwhile
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            staged = scratch / "folder"
            content = build(staged)
            (staged / marker).write_text(json.dumps(content, indent=2) + "\n")
            if target.exists():  # a folder without the marker is a leftover of a killed build
                shutil.rmtree(target)
            os.replace(staged, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
