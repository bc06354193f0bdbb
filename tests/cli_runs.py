"""The ``rella-hf`` command line as a subprocess: its environment, a run to completion, a run stopped by a signal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(root: Path) -> dict:
    """This process's environment with the rella-hf and Hugging Face caches under ``root`` and the Hub offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "RELLA_HF_"))}
    env.update(RELLA_HF_CACHE=str(root / "rella_hf"), HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_CACHE=str(root / "hf" / "datasets"),
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def run_cli(args, env, cwd, **kwargs) -> subprocess.CompletedProcess:
    """``rella-hf <args>`` to completion (10 minutes at most), output captured."""
    return subprocess.run([sys.executable, "-m", "rella_hf.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kwargs)


def interrupt_cli(args, env, cwd, started, signum) -> tuple[int, str, float]:
    """Run the command, send ``signum`` once ``started()`` holds; return (exit code, stderr, seconds to stop)."""
    with open(Path(cwd) / "stderr.txt", "w+") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "rella_hf.cli", *args], env=env, cwd=cwd,
                                   stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        deadline = time.monotonic() + 600
        while not started() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the command finished before it could be interrupted"
        sent = time.monotonic()
        process.send_signal(signum)
        code = process.wait(timeout=120)
        stopped = time.monotonic() - sent
        stderr.seek(0)
        return code, stderr.read(), stopped


def command_lines(text: str) -> list[str]:
    """The command's own lines of ``text`` (a progress bar left open may stand before one on the same line)."""
    return [line[line.index("rella-hf "):] for line in text.splitlines() if "rella-hf " in line]
