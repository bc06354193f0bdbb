"""Ctrl-C during ``rella-hf embed``: it stops at once, leaves no vectors behind, and the same command finishes the job.

Its own file (not tests/test_faults.py) so that pytest-xdist, which hands out whole files (``--dist loadfile``), runs it
beside the fault tests rather than after them.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from cli_runs import cli_env, command_lines, interrupt_cli, run_cli


def _write_ml_latest_small_format(folder: Path, movies: int = 1500, users: int = 200) -> Path:
    """An ml-latest-small-format corpus of ``movies`` titles: enough MiniLM work (~10 s on one core) to interrupt."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = np.arange(1, movies + 1)
    lines = [f'{item},"Film {item}, The ({1930 + item % 90})",Drama|Comedy' for item in items]
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "\n".join(lines) + "\n")
    ratings = ["userId,movieId,rating,timestamp"]
    for user in range(1, users + 1):
        for offset, item in enumerate(rng.choice(items, size=20, replace=False)):
            ratings.append(f"{user},{item},{rng.integers(1, 11) / 2:.1f},{1_000_000 + 1000 * user + offset}")
    (folder / "ratings.csv").write_text("\n".join(ratings) + "\n")
    return folder


@pytest.mark.slow
def test_embed_stops_on_ctrl_c_and_the_same_command_writes_the_same_vectors(tmp_path):
    env = cli_env(tmp_path)
    data_dir = _write_ml_latest_small_format(tmp_path / "corpus")
    command = ["embed", "--dataset", "ml-latest-small", "--data_dir", str(data_dir), "--embedder", "minilm",
               "--output", str(tmp_path / "items.npy")]
    stderr_file = tmp_path / "stderr.txt"
    code, stderr, stopped = interrupt_cli(command, env, tmp_path,
                                          lambda: stderr_file.exists() and any(bar in stderr_file.read_text() for bar in
                                                                               ("Batches:", "Embedding items")),
                                          signal.SIGINT)
    assert code == 130 and stopped < 30, stderr
    assert "interrupted by SIGINT" in command_lines(stderr)[-1]
    assert not (tmp_path / "items.npy").exists() and not list((tmp_path / "rella_hf" / "embeddings").glob("*.npy"))
    done = run_cli(command, env, tmp_path)
    assert done.returncode == 0, done.stderr
    again = tmp_path / "again"
    again.mkdir()
    fresh = run_cli([*command[:-1], str(again / "items.npy")], cli_env(again), again)
    assert fresh.returncode == 0, fresh.stderr
    assert np.array_equal(np.load(tmp_path / "items.npy"), np.load(again / "items.npy"))
