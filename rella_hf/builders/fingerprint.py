"""Content digests of the raw corpus files a build reads, for the dataset cache key.

A ``datasets`` cache entry keyed by the ``data_dir`` path alone would serve old rows after a
user fixes a corpus file. The key therefore holds a digest of every release file's bytes. Hashing
ML-25M's ratings on every call would cost seconds, so each file's sha256 is remembered with its
size, mtime and inode (``cache_root()/file-digests.json``): an unchanged file costs one
``stat``; a changed (or touched) one is hashed again, and a touch without a content change gives
the same digest, so the cached dataset is still reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..utils import atomic_write_text, cache_root, fingerprint

_MEMO_NAME = "file-digests.json"


def _memo_path() -> Path:
    return cache_root() / _MEMO_NAME


def _read_memo() -> dict:
    try:
        memo = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged memo: every file is hashed again
    return memo if isinstance(memo, dict) else {}


def file_digest(path: str | os.PathLike, memo: dict | None = None) -> str:
    """sha256 of a file's bytes, reusing ``memo`` when size, mtime and inode are unchanged.

    Args:
        path: the file.
        memo: ``{absolute path: [size, mtime_ns, inode, sha256]}``; updated in place.
    """
    path = Path(path).resolve()
    stat = path.stat()
    signature = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
    known = (memo or {}).get(str(path))
    if isinstance(known, list) and len(known) == 4 and known[:3] == signature:
        return known[3]
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if memo is not None:
        memo[str(path)] = [*signature, digest]
    return digest


def corpus_files_digest(corpus, data_dir: str | os.PathLike) -> str:
    """One digest of the release files ``corpus`` reads from ``data_dir`` (names, then contents).

    A missing file is left to the reader, which reports it with the expected name.
    """
    from ..corpora.base import resolve_file
    from ..errors import DataFormatError

    memo = _read_memo()
    before = dict(memo)
    parts = []
    for name in corpus.required_files:
        try:
            path = resolve_file(Path(data_dir), name)
        except DataFormatError:
            parts.append([name, None])
            continue
        parts.append([path.name, file_digest(path, memo) if path.is_file() else None])
    if memo != before:
        try:
            atomic_write_text(_memo_path(), json.dumps(memo, sort_keys=True))
        except OSError:
            pass  # a read-only cache only costs hashing again next time
    return fingerprint("rella-hf/corpus-files/v1", parts)
