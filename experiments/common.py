"""Shared pieces of the experiment scripts: data locations, the fixed test subset, result files.

Results are appended as JSON lines (``results/*.jsonl``), one line per finished setting, so an
interrupted grid continues where it stopped. Per-sample scores of every setting of a dataset live in
one file, ``runs/<dataset>/scores.parquet`` (:func:`rella_hf.report.pack_scores`), which
:mod:`rella_hf.report` reads like loose ``scores/<setting>.jsonl`` files: :func:`save_scores` writes a
setting and packs it; ``python experiments/collect_scores.py`` packs whatever loose score files a run
left (older scripts, the training runs' ``validation_scores.jsonl``). Training folders under ``runs/``
keep only ``metrics.json`` and ``training_config.json`` in git (``runs/.gitignore``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent
RESULTS = EXPERIMENTS / "results"
RUNS = EXPERIMENTS / "runs"
SHARED_DATA = Path(os.environ.get("RELLA_SHARED_DATA", EXPERIMENTS.parents[1] / "shared" / "data"))

TEST_SUBSET = 1000
SUBSET_SEED = 42
MODEL = "smollm2-135m-instruct"
EMBEDDER = "minilm"


def data_dir(dataset: str) -> str | None:
    """Release files of ``dataset``: the ../shared ML-1M copy (users 1-2999) under stable names, or None (bundled)."""
    if dataset == "ml-latest-small":
        return None
    if dataset != "ml-1m":
        raise SystemExit(f"no experiment data for {dataset}")
    source = SHARED_DATA / "ml-1m"
    if not (source / "ratings.partial.dat.gz").exists():
        raise SystemExit(f"the ML-1M copy is not at {source}; set RELLA_SHARED_DATA")
    folder = Path.home() / ".cache" / "rella_hf" / "experiments" / "ml-1m-users-1-2999"
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in (("users.dat", "users.dat"), ("movies.dat", "movies.dat"), ("ratings.dat.gz", "ratings.partial.dat.gz")):
        link = folder / name
        if not link.exists():
            link.symlink_to(source / target)
    return str(folder)


def prompt_dataset(dataset: str, K: int, retrieval: str, full: bool = False):
    """The prompt DatasetDict of a setting; with ``full=False`` test is the fixed 1,000-sample subset.

    The subset is the builder's seeded ``test_sample_size`` draw (sorted positions of
    ``default_rng(42).choice``); :func:`test_subset` draws the same rows from a full build.
    """
    import rella_hf

    sizes = {} if full else {"test_sample_size": TEST_SUBSET, "validation_sample_size": TEST_SUBSET,
                             "train_sample_size": TEST_SUBSET, "sample_seed": SUBSET_SEED}
    return rella_hf.load_dataset(dataset, K=K, retrieval=retrieval, data_dir=data_dir(dataset), embedder=EMBEDDER,
                                 chat_model=MODEL, **sizes)


def test_subset(test_split):
    """The fixed test subset drawn from a full test split (the same rows as ``prompt_dataset(..., full=False)``)."""
    from rella_hf.samples import seeded_subset

    return seeded_subset(test_split, TEST_SUBSET, SUBSET_SEED)


def done(results_file: Path) -> dict[str, dict]:
    """Finished settings of a results file: setting -> its JSON line."""
    if not results_file.exists():
        return {}
    rows = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
    return {row["setting"]: row for row in rows}


def pending_grid(results_file: Path, prefix: str, datasets, Ks):
    """The (dataset, K, retrieval, setting name) of a K x {recent, semantic} grid not yet in ``results_file``."""
    for dataset in datasets:
        for K in Ks:
            for retrieval in ("recent", "semantic"):
                name = f"{prefix}-K{K}-{retrieval}"
                if f"{dataset}/{name}" not in done(results_file):
                    yield dataset, K, retrieval, name


def append_result(results_file: Path, row: dict) -> None:
    """Append one finished setting (with the machine and time) to a results file."""
    results_file.parent.mkdir(parents=True, exist_ok=True)
    row = dict(row, finished=time.strftime("%Y-%m-%d %H:%M:%S"), machine=machine())
    with open(results_file, "a") as handle:
        handle.write(json.dumps(row, default=float) + "\n")


def machine() -> str:
    """CPU count, memory and Python of this machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs, {memory:.0f} GiB, Python {platform.python_version()}"


def dataset_dirs() -> list[Path]:
    """The dataset folders under ``runs/`` that hold scores, packed or loose."""
    from rella_hf.report import PACKED_SCORES

    if not RUNS.is_dir():
        return []
    return sorted(path for path in RUNS.iterdir() if (path / PACKED_SCORES).is_file() or (path / "scores").is_dir())


def save_scores(run_dir: Path, setting: str, labels, scores, meta: dict, raw_prompts=None) -> Path:
    """Write one setting's scores (:func:`rella_hf.report.write_scores`) and pack them into ``scores.parquet``."""
    from rella_hf.report import pack_scores, write_scores

    write_scores(run_dir, setting, labels, scores, meta, raw_prompts)
    return pack_scores(run_dir)


def collect_scores() -> dict[str, Path]:
    """Pack the loose score files of every dataset folder (idempotent): dataset -> its ``scores.parquet``."""
    from rella_hf.report import pack_scores

    packed = {}
    for dataset_dir in dataset_dirs():
        path = pack_scores(dataset_dir)
        if path is not None:
            packed[dataset_dir.name] = path
    return packed
