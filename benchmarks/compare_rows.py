"""Are the dataset rows of this checkout identical to another commit's? Hash for hash, split by split.

Builds ``rella_hf.load_dataset("ml-1m", data_dir=<the ../shared ML-1M copy>, K=..., retrieval=...)``
(recent and semantic by default) once with this checkout and once with another commit checked out
as a git worktree, each in a fresh process with its own empty ``datasets`` cache, hashes every row
(sha256 of the row's JSON) and compares the lists. Embeddings come from each checkout's own
embedder (MiniLM by default) and its own embedding cache.

Usage: python benchmarks/compare_rows.py [--old-commit HEAD~5] [--K 5] [--retrievals recent semantic]
       python benchmarks/compare_rows.py --old-tree /tmp/rella-old          (a worktree already checked out)
       python benchmarks/compare_rows.py --hash-rows out.json --retrieval recent --K 5   (one build, this process)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ml1m_shared_copy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def hash_rows(out: str, K: int, retrieval: str, corpus: str) -> None:
    """Build one dataset in this process and write {split: [row sha256, ...]} to ``out``."""
    import rella_hf

    data_dir = ml1m_shared_copy() if corpus == "ml-1m" else None
    cache = Path(tempfile.mkdtemp(prefix="rella-compare-rows-"))
    try:
        started = time.perf_counter()
        dataset = rella_hf.load_dataset(corpus, K=K, retrieval=retrieval, data_dir=data_dir, cache_dir=cache)
        seconds = time.perf_counter() - started
        hashes = {}
        for name, split in dataset.items():
            hashes[name] = [hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
                            for row in split]
        Path(out).write_text(json.dumps({"module": rella_hf.__file__, "seconds": seconds, "hashes": hashes}))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def ensure_worktree(commit: str) -> Path:
    """A git worktree of ``commit`` under /tmp (reused when it is already there at that commit)."""
    resolved = subprocess.run(["git", "-C", str(REPO), "rev-parse", commit], check=True, capture_output=True,
                              text=True).stdout.strip()
    tree = Path(tempfile.gettempdir()) / f"rella-old-{resolved[:12]}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), resolved], check=True,
                       capture_output=True)
    return tree


def run_one(tree: Path | None, K: int, retrieval: str, corpus: str) -> dict:
    """Hash the rows built by the code at ``tree`` (None: this checkout), in a fresh process."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        target = handle.name
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        subprocess.run([sys.executable, __file__, "--hash-rows", target, "--K", str(K), "--retrieval", retrieval,
                        "--corpus", corpus], check=True, env=env)
        return json.loads(Path(target).read_text())
    finally:
        os.unlink(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-commit", default=None, help="commit to compare against (checked out as a worktree)")
    parser.add_argument("--old-tree", default=None, help="an existing checkout of the old code")
    parser.add_argument("--corpus", default="ml-1m")
    parser.add_argument("--K", type=int, default=5)
    parser.add_argument("--retrievals", nargs="+", default=["recent", "semantic"])
    parser.add_argument("--retrieval", help=argparse.SUPPRESS)
    parser.add_argument("--hash-rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hash_rows:
        hash_rows(args.hash_rows, args.K, args.retrieval, args.corpus)
        return
    if (args.old_commit is None) == (args.old_tree is None):
        parser.error("pass exactly one of --old-commit or --old-tree")
    tree = Path(args.old_tree) if args.old_tree else ensure_worktree(args.old_commit)
    failures = 0
    for retrieval in args.retrievals:
        old, new = run_one(tree, args.K, retrieval, args.corpus), run_one(None, args.K, retrieval, args.corpus)
        if Path(old["module"]).resolve().is_relative_to(REPO.resolve()):
            raise SystemExit(f"the old build imported {old['module']}, not the worktree {tree}")
        for split in sorted(set(old["hashes"]) | set(new["hashes"])):
            a, b = old["hashes"].get(split, []), new["hashes"].get(split, [])
            same = sum(x == y for x, y in zip(a, b))
            identical = a == b
            failures += not identical
            print(f"{args.corpus} K={args.K} {retrieval} {split}: old {len(a):,} rows, new {len(b):,} rows, "
                  f"{same:,} hash-identical in order — {'IDENTICAL' if identical else 'DIFFERENT'}")
        print(f"{args.corpus} K={args.K} {retrieval}: build {old['seconds']:.1f} s old, {new['seconds']:.1f} s new")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
