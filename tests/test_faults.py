"""Faults in flight: bad model names, rejected tokenizers, a full disk, and Ctrl-C / SIGTERM mid-command.

The signal and full-disk tests run the ``rella-hf`` command line as a subprocess on the bundled
ml-latest-small (K=5, recent histories, Vicuna wrapping) with the tiny random Llama, stop it once its
progress shows on disk, check the exit code and what it left, run the same command again and compare
with an uninterrupted run. A full disk is a small tmpfs mounted over the folder (root only; skipped
otherwise) and grown once the failure is seen.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_runs import cli_env, command_lines, interrupt_cli, run_cli

from rella_hf.errors import ConfigError, ModelError

DATA = ["--dataset", "ml-latest-small", "--K", "5", "--chat_model", "none"]


# ---------------------------------------------------------------------------------------------
# Bad input, caught before any work
# ---------------------------------------------------------------------------------------------


def test_a_chat_model_that_is_no_folder_nor_hub_id_is_one_config_error(tmp_path):
    import rella_hf

    for bad in ("/nonexistent/x", "./missing-model", "a/b/c"):
        with pytest.raises(ConfigError, match=r"chat_model=.*no such file or folder, nor a Hub id") as caught:
            rella_hf.load_dataset("ml-latest-small", K=5, chat_model=bad, cache_dir=str(tmp_path))
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "datasets").exists()


def test_a_tokenizer_rejected_for_lacking_yes_no_tokens_leaves_no_scoring_manifest(tmp_path):
    import datasets
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rella_hf.scoring import CTRScorer, score_dataset

    # Character-level: " Yes." and " No." both start with the space token, so no answer token tells them apart.
    prompts = ["USER: Will the user like Heat (1995)? ASSISTANT:", "USER: Will the user like Alien (1979)? ASSISTANT:"]
    characters = sorted(set("".join(prompts) + " Yes. No. yes no YES NO"))
    backend = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["<unk>"] + characters)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         intermediate_size=32, vocab_size=len(tokenizer))).eval()
    split = datasets.Dataset.from_dict({"prompt": prompts, "label": [1, 0]})
    run = tmp_path / "run" / "partial" / "K5-recent"
    with pytest.raises(ModelError, match="does not tell yes from no"):
        score_dataset(CTRScorer(model, tokenizer), split, output_dir=run, progress=False)
    assert not run.exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Signals and full disks, in process
# ---------------------------------------------------------------------------------------------


def test_deferred_signals_record_a_stop_then_raise_and_a_second_signal_raises_at_once():
    from rella_hf.interrupts import Interrupted, deferred_signals, exit_code

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as caught:
        with deferred_signals() as request:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs between bytecodes: nothing is raised here
            assert request.signum == signal.SIGTERM
    assert caught.value.signum == signal.SIGTERM and exit_code(caught.value) == 143
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(Interrupted):
        with deferred_signals() as request:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C does not wait for the safe point
            time.sleep(0.05)
            pytest.fail("the second signal did not raise")
    assert exit_code(KeyboardInterrupt()) == 130 and isinstance(Interrupted(signal.SIGTERM), KeyboardInterrupt)


def test_the_command_line_turns_sigterm_into_an_interruption_and_restores_the_handlers():
    from rella_hf.interrupts import Interrupted, raise_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with raise_on_signals():
        with pytest.raises(Interrupted, match="interrupted by SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_full_disk_is_told_as_such_through_library_wrappers():
    import errno

    from rella_hf.cli import disk_full

    direct = OSError(errno.ENOSPC, "No space left on device", "/cache/x.arrow")
    assert "no space left on the device (writing /cache/x.arrow)" in disk_full(direct)
    try:
        try:
            raise direct
        except OSError as error:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from error
    except RuntimeError as wrapped:
        assert disk_full(wrapped) is not None
    assert disk_full(Exception("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")) is not None
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None and disk_full(ValueError("x")) is None


def test_a_checkpoint_cut_short_is_never_resumed_from(tmp_path):
    from rella_hf.training.callbacks import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "missing") is None
    for step in (2, 4, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_st')  # the disk filled up here
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


# ---------------------------------------------------------------------------------------------
# The command line as a subprocess
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory, smollm2_dir, tiny_model_dir):
    """A cache folder (models linked in) and the environment of the subprocesses that share it."""
    root = tmp_path_factory.mktemp("faults")
    models = root / "rella_hf" / "models"
    models.mkdir(parents=True)
    (models / "smollm2-135m-instruct").symlink_to(smollm2_dir, target_is_directory=True)
    (models / "tiny-random-llama-seed0").symlink_to(tiny_model_dir, target_is_directory=True)
    return {"root": root, "env": cli_env(root), "model": str(models / "tiny-random-llama-seed0")}


def _rows(folder: Path) -> dict:
    import datasets

    built = datasets.load_from_disk(str(folder))
    return {split: (built[split]["sample_id"], built[split]["prompt"], built[split]["label"]) for split in built}


def _scores(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "scores" / "K5-recent.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(shared):
    """Uninterrupted runs in the shared cache: the built dataset, 2,100 scores (three shards of up to 1,024) and a training run."""
    root, env = shared["root"], shared["env"]
    done = run_cli(["build", *DATA, "--output_dir", str(root / "ref-built")], env, root)
    assert done.returncode == 0, done.stderr
    done = run_cli(["score", *DATA, "--model", shared["model"], "--limit", "2100", "--output_dir", str(root / "ref-run")],
                   env, root)
    assert done.returncode == 0, done.stderr
    config = _train_config(root / "ref-train.yaml", root / "ref-train")
    done = run_cli(["train", "--config", str(config)], env, root)
    assert done.returncode == 0, done.stderr
    return {"rows": _rows(root / "ref-built"), "scores": _scores(root / "ref-run"), "train": root / "ref-train"}


def _train_config(path: Path, output_dir: Path) -> Path:
    """ReiT on recent-K prompts with the tiny model: 512 shots, 64 optimizer steps, a checkpoint every 8."""
    path.write_text("\n".join([
        f"output_dir: {output_dir}", "model_name_or_path: tiny-random-llama",
        "dataset: ml-latest-small", "K: 5", "train_type: simple", "test_type: simple", "shots: 512", "eval_size: 16",
        "compute_eval_loss: false", "per_device_train_batch_size: 8", "total_batch_size: 8", "num_train_epochs: 1",
        "learning_rate: 1.0e-3", "eval_strategy: steps", "eval_steps: 8", "save_strategy: steps", "save_steps: 8",
        "save_total_limit: 2", "load_best_model_at_end: true", "metric_for_best_model: auc", "logging_steps: 8",
        "lora_dropout: 0.1", "bf16: false", "seed: 42", "report_to: none", ""]))
    return path


def _same_adapter(expected_dir: Path, got_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    expected = load_file(str(expected_dir / "adapter_model.safetensors"))
    got = load_file(str(got_dir / "adapter_model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.allclose(expected[key], got[key], atol=1e-6), key


@pytest.mark.slow
def test_build_stops_on_sigterm_and_the_same_command_builds_the_same_rows(tmp_path, shared, reference):
    # SIGTERM goes out once the `datasets` builder's .incomplete folder shows, about a second before the build ends.
    # Once (a fresh CI run, 2 busy cores) the build still ended with exit 0 and complete rows, the signal not acted on
    # before the save finished; so a build that completes must have the reference rows, and the stop is tried again in
    # a fresh cache (each attempt has its own, so the build really runs).
    for attempt in range(3):
        root = tmp_path / f"attempt-{attempt}"
        env = cli_env(root)
        shutil.copytree(shared["root"] / "rella_hf" / "models", root / "rella_hf" / "models", symlinks=True)
        command = ["build", *DATA, "--output_dir", str(root / "built")]
        code, stderr, stopped = interrupt_cli(command, env, root, lambda: any(root.rglob("*.incomplete")),
                                              signal.SIGTERM)
        if code != 0:
            break
        assert _rows(root / "built") == reference["rows"]
    assert code == 143 and stopped < 30, stderr
    assert command_lines(stderr)[-1] == "rella-hf build: interrupted by SIGTERM; run the same command again to continue"
    assert not any(root.rglob("*.incomplete")) and not (root / "built").exists()
    done = run_cli(command, env, root)
    assert done.returncode == 0, done.stderr
    assert _rows(root / "built") == reference["rows"]


@pytest.mark.slow
def test_score_stops_on_sigterm_keeps_its_shards_and_the_same_command_finishes_them(tmp_path, shared, reference):
    run = tmp_path / "run"
    command = ["score", *DATA, "--model", shared["model"], "--limit", "2100", "--output_dir", str(run)]
    partial = run / "partial" / "K5-recent"
    code, stderr, stopped = interrupt_cli(command, shared["env"], tmp_path,
                                       lambda: (partial / "scores-00000.npz").exists(), signal.SIGTERM)
    assert code == 143 and stopped < 30, stderr
    kept = {path.name: path.stat().st_mtime_ns for path in partial.glob("scores-*.npz")}
    assert "scores-00000.npz" in kept and not (run / "scores").exists()
    done = run_cli(command, shared["env"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(partial.joinpath(name).stat().st_mtime_ns == stamp for name, stamp in kept.items())  # not scored again
    assert _scores(run) == reference["scores"]


@pytest.mark.slow
def test_train_checkpoints_on_ctrl_c_and_the_same_command_resumes_to_the_same_adapter(tmp_path, shared, reference):
    output_dir = tmp_path / "train"
    config = _train_config(tmp_path / "train.yaml", output_dir)
    command = ["train", "--config", str(config)]
    code, stderr, stopped = interrupt_cli(command, shared["env"], tmp_path,
                                       lambda: (output_dir / "checkpoint-16" / "trainer_state.json").exists(),
                                       signal.SIGINT)
    assert code == 130 and stopped < 30, stderr
    interrupted = json.loads((output_dir / "interrupted.json").read_text())
    assert (output_dir / interrupted["checkpoint"] / "trainer_state.json").exists()
    assert not (output_dir / "adapter_model.safetensors").exists() and not (output_dir / "metrics.json").exists()
    done = run_cli(command, shared["env"], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith(interrupted["checkpoint"]) and not (output_dir / "interrupted.json").exists()
    _same_adapter(reference["train"], output_dir)


# ---------------------------------------------------------------------------------------------
# A full disk (a small tmpfs over the folder; root only)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """``mount(size)``: a tmpfs of ``size`` over a fresh folder; ``grow(size)`` remounts it larger. Unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs as a full disk needs root and mount(8)")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def mount(size: str) -> Path:
        options = f"size={size}" if not mounted else f"remount,size={size}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(size)
        return folder

    yield mount
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def _disk_full_line(stderr: str, command: str) -> None:
    errors = [line for line in command_lines(stderr) if line.startswith(f"rella-hf {command}: ")]
    assert len(errors) == 1 and errors[0] == command_lines(stderr)[-1], stderr
    assert errors[0].startswith(f"rella-hf {command}: error: no space left on the device"), stderr
    assert errors[0].endswith("run the same command again")


@pytest.mark.slow
def test_a_full_cache_disk_fails_in_one_line_and_the_same_build_works_once_there_is_space(tmp_path, shared, reference,
                                                                                          small_disk):
    disk = small_disk("2m")
    env = cli_env(disk)  # every cache on the small disk
    shutil.copytree(shared["root"] / "rella_hf" / "models", disk / "rella_hf" / "models", symlinks=True)
    command = ["build", *DATA, "--output_dir", str(tmp_path / "built")]
    failed = run_cli(command, env, tmp_path)
    assert failed.returncode == 1
    _disk_full_line(failed.stderr, "build")
    assert not any(disk.rglob("*.incomplete")) and not (tmp_path / "built").exists()
    small_disk("1g")
    done = run_cli(command, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert _rows(tmp_path / "built") == reference["rows"]


@pytest.mark.slow
def test_a_full_output_disk_fails_in_one_line_and_the_same_score_works_once_there_is_space(tmp_path, shared, reference,
                                                                                           small_disk):
    run = small_disk("64k") / "run"
    command = ["score", *DATA, "--model", shared["model"], "--limit", "2100", "--output_dir", str(run)]
    failed = run_cli(command, shared["env"], tmp_path)
    assert failed.returncode == 1
    _disk_full_line(failed.stderr, "score")
    assert not (run / "scores" / "K5-recent.jsonl").exists()
    assert not list(run.rglob(".*.tmp"))  # no half-written file left behind
    small_disk("1g")
    done = run_cli(command, shared["env"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert _scores(run) == reference["scores"]


@pytest.mark.slow
def test_a_full_checkpoint_disk_fails_in_one_line_and_the_same_training_works_once_there_is_space(tmp_path, shared,
                                                                                                  reference, small_disk):
    output_dir = small_disk("1m") / "train"
    config = _train_config(tmp_path / "train.yaml", output_dir)
    failed = run_cli(["train", "--config", str(config)], shared["env"], tmp_path)
    assert failed.returncode == 1
    _disk_full_line(failed.stderr, "train")
    assert not (output_dir / "adapter_model.safetensors").exists() and not (output_dir / "metrics.json").exists()
    small_disk("1g")
    done = run_cli(["train", "--config", str(config)], shared["env"], tmp_path)
    assert done.returncode == 0, done.stderr
    _same_adapter(reference["train"], output_dir)
