"""Tests of rella_hf.training: few-shot sets, config parsing, tokenization vs scoring, training, resuming."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from rella_hf.errors import ConfigError  # noqa: E402
from rella_hf.training import (  # noqa: E402
    ReiTConfig,
    build_eval_rows,
    build_train_rows,
    build_training_data,
    hardware_supports_bf16,
    lora_config,
    parse_config,
    sample_pool,
    shot_positions,
    tokenize_rows,
    train_on_data,
)

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------
# Models: the session's converted SmolLM2 and one tiny random Llama, linked into each test's
# isolated rella-hf cache (conftest's ``isolated_caches``) so nothing is converted twice.
# ------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("models_in_isolated_cache")


# ------------------------------------------------------------------------------------------
# Fixtures: hand-made prompt datasets with the load_dataset columns
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


def _prompt_split(tokenizer, n: int, kind: str, seed: int, shuffle: bool = False) -> datasets.Dataset:
    """A split whose ``sample_id`` i has label ``labels[i]``; ``kind`` marks the prompt flavour."""
    from rella_hf.prompts import answer_completion, wrap_prompts

    labels = np.random.default_rng(seed).integers(0, 2, n)
    sample_ids = np.arange(n) * 3 + 1000 * seed
    # Shown ratings: three items, two for every tenth sample (the sanity task reads them).
    shown = [np.random.default_rng([seed, i]).integers(1, 6, 2 if i % 10 == 0 else 3).astype(float).tolist()
             for i in range(n)]
    raw = [f"[{kind}] The user watched movies " + ", ".join(f"{i + j} ({r:.1f} stars)" for j, r in enumerate(shown[i]))
           + f". Will the user like movie {i}? You should ONLY tell me yes or no." for i in range(n)]
    prompts = wrap_prompts(raw, tokenizer)
    order = np.random.default_rng(seed + 99).permutation(n) if shuffle else np.arange(n)
    return datasets.Dataset.from_dict({
        "sample_id": sample_ids[order],
        "raw_prompt": [raw[i] for i in order],
        "prompt": [prompts[i] for i in order],
        "completion": [answer_completion(prompts[i], bool(labels[i])) for i in order],
        "label": labels[order],
        "history_ratings": [shown[i] for i in order],
    })


@pytest.fixture(scope="module")
def prompt_datasets(tokenizer):
    # The SUBR dataset lists its samples in another order: rows must be joined on sample_id.
    simple = datasets.DatasetDict(train=_prompt_split(tokenizer, 120, "recent", 1),
                                  validation=_prompt_split(tokenizer, 48, "recent", 2))
    sequential = datasets.DatasetDict(train=_prompt_split(tokenizer, 120, "semantic", 1, shuffle=True),
                                      validation=_prompt_split(tokenizer, 48, "semantic", 2, shuffle=True))
    return {"simple": simple, "sequential": sequential}


@pytest.fixture(autouse=True)
def calibration_top_up_from_the_fixture(monkeypatch, prompt_datasets):
    """Top a run's small validation subset up for its end-of-training calibration from this module's validation split.

    The real loader rebuilds the run's dataset (``ml-latest-small`` with MiniLM item embeddings, about a minute on one
    core) in every test's fresh cache; the runs here train on the hand-made splits above, so their top-up rows come
    from those (tests/test_demo.py covers the real loader end to end).
    """
    from rella_hf.training.data import build_eval_rows

    def loader(config, data, model=None):
        return lambda size: build_eval_rows(prompt_datasets[config.test_type][data.eval_split], size, config.test_type,
                                            config.sample_seed)

    monkeypatch.setattr("rella_hf.calibration._validation_rows_loader", loader)


def _config(tmp_path, **overrides) -> ReiTConfig:
    settings = dict(
        output_dir=str(tmp_path / "run"), model_name_or_path="tiny-random-llama", shots=8, pool_size=60,
        train_type="mixed", test_type="sequential", eval_size=0, per_device_train_batch_size=2,
        per_device_eval_batch_size=8, total_batch_size=4, num_train_epochs=1, logging_steps=1,
        save_strategy="no", eval_strategy="no", seed=7, disable_tqdm=True,
    )
    settings.update(overrides)
    return ReiTConfig(**settings)


# ------------------------------------------------------------------------------------------
# Few-shot sets
# ------------------------------------------------------------------------------------------


def test_sample_pool_is_the_papers_draw_and_shots_nest():
    pool = sample_pool(5000, pool_size=700, seed=42)
    assert pool.tolist() == random.Random(42).sample(range(5000), 700)
    small, large = shot_positions(5000, 64, 700, 42), shot_positions(5000, 256, 700, 42)
    assert large[:64].tolist() == small.tolist()
    assert len(set(large.tolist())) == 256
    # A pool larger than the split is the whole split, shuffled.
    assert sorted(sample_pool(30, pool_size=100, seed=1).tolist()) == list(range(30))


def test_shot_count_beyond_the_split_is_refused():
    with pytest.raises(ConfigError, match="shots=40"):
        shot_positions(30, 40, 100, 42)


@pytest.mark.parametrize("train_type", ["simple", "sequential", "mixed"])
def test_train_rows_pair_the_same_samples_across_prompt_kinds(prompt_datasets, train_type):
    simple, sequential = prompt_datasets["simple"]["train"], prompt_datasets["sequential"]["train"]
    rows = build_train_rows(simple, sequential, train_type, shots=10, pool_size=60, seed=42)
    expected_ids = np.asarray(simple["sample_id"])[shot_positions(len(simple), 10, 60, 42)].tolist()
    if train_type == "mixed":
        assert len(rows) == 20
        assert rows["prompt_kind"] == ["simple", "sequential"] * 10
        assert rows["sample_id"][0::2] == expected_ids and rows["sample_id"][1::2] == expected_ids
    else:
        assert len(rows) == 10 and set(rows["prompt_kind"]) == {train_type}
        assert rows["sample_id"] == expected_ids
    # Every row carries its own sample's prompt kind and label.
    label_of = dict(zip(simple["sample_id"], simple["label"]))
    assert all(label_of[sid] == label for sid, label in zip(rows["sample_id"], rows["label"]))
    for kind, prompt in zip(rows["prompt_kind"], rows["prompt"]):
        assert ("[recent]" if kind == "simple" else "[semantic]") in prompt
    assert set(rows.column_names) == {"sample_id", "prompt", "completion", "label", "prompt_kind"}


def test_smaller_shot_sets_nest_inside_larger_ones(prompt_datasets):
    simple, sequential = prompt_datasets["simple"]["train"], prompt_datasets["sequential"]["train"]
    small = build_train_rows(simple, sequential, "mixed", shots=8, pool_size=60, seed=42)
    large = build_train_rows(simple, sequential, "mixed", shots=32, pool_size=60, seed=42)
    assert large["prompt"][:16] == small["prompt"]


def test_missing_samples_in_the_other_prompt_dataset_are_refused(prompt_datasets):
    simple = prompt_datasets["simple"]["train"]
    truncated = prompt_datasets["sequential"]["train"].select(range(5))
    with pytest.raises(ConfigError, match="missing from the sequential prompts"):
        build_train_rows(simple, truncated, "mixed", shots=20, pool_size=60, seed=42)
    with pytest.raises(ConfigError, match="needs the sequential prompt dataset"):
        build_train_rows(simple, None, "mixed", shots=5)


def test_eval_rows_are_a_seeded_subset_with_the_test_type(tmp_path, prompt_datasets):
    config = _config(tmp_path, eval_size=20, test_type="sequential")
    data = build_training_data(config, prompt_datasets)
    assert data.eval_split == "validation" and len(data.eval) == 20
    assert set(data.eval["prompt_kind"]) == {"sequential"}
    again = build_eval_rows(prompt_datasets["sequential"]["validation"], 20, "sequential", seed=config.sample_seed)
    assert again["sample_id"] == data.eval["sample_id"]
    no_validation = {kind: datasets.DatasetDict(train=d["train"], test=d["validation"])
                     for kind, d in prompt_datasets.items()}
    assert build_training_data(config, no_validation).eval_split == "test"


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("native_bf16", [True, False])
def test_bf16_follows_the_cpu_capability(tmp_path, monkeypatch, native_bf16):
    import rella_hf.models

    monkeypatch.setattr(rella_hf.models, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = _config(tmp_path)
    assert config.bf16 is native_bf16
    assert config.base_dtype == ("bfloat16" if native_bf16 else "float32")
    assert config.reit_settings()["compute_dtype"] == config.base_dtype
    assert _config(tmp_path, bf16=False).base_dtype == "float32"  # overridable (--bf16 false)
    assert _config(tmp_path, bf16=False, model_dtype="bfloat16").base_dtype == "bfloat16"


def test_bf16_on_any_accelerator_follows_accelerates_answer(monkeypatch):
    """R7: not only CUDA: an XPU (or MPS, NPU, ...) trains in bf16 where accelerate says it computes it."""
    import accelerate.utils

    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("xpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(accelerate.utils, "is_bf16_available", lambda *a, **k: True)
    assert hardware_supports_bf16() is True
    monkeypatch.setattr(accelerate.utils, "is_bf16_available", lambda *a, **k: False)
    assert hardware_supports_bf16() is False


def test_fast_recipe_defaults(tmp_path):
    config = _config(tmp_path)
    assert config.activation_checkpointing is None and config.gradient_checkpointing is None  # size-based default
    assert config.train_sampling_strategy == "group_by_length"
    assert config.completion_logits_only is True
    assert _config(tmp_path, activation_checkpointing=True).activation_checkpointing is True
    assert config.cpu_float32_attention is True and config.reit_settings()["cpu_float32_attention"] is True


@pytest.mark.parametrize("threshold, setting, expected", [
    (10**9, None, False),    # the tiny model (and the 135M demo) trains without recomputation
    (1, None, True),         # a model at or above the threshold (a 7B one) recomputes by default
    (1, False, False),       # an explicit setting wins
])
def test_activation_checkpointing_defaults_to_on_for_big_models(tmp_path, prompt_datasets, monkeypatch, threshold,
                                                                setting, expected):
    """R5: a user's own 7B YAML at 2,048 tokens recomputes activations unless told otherwise."""
    import rella_hf.training.config as config_module
    from rella_hf.training import build_trainer, load_model_for_training

    monkeypatch.setattr(config_module, "ACTIVATION_CHECKPOINTING_MIN_PARAMETERS", threshold)
    config = _config(tmp_path, bf16=False, activation_checkpointing=setting)
    model, tokenizer = load_model_for_training(config)
    trainer = build_trainer(config, build_training_data(config, prompt_datasets), model, tokenizer)
    assert trainer.args.activation_checkpointing is expected and trainer.args.gradient_checkpointing is expected


def test_trl_model_fields_reach_the_loader_and_quantization_is_refused_where_it_cannot_run(tmp_path, monkeypatch):
    """R3: trl's ModelConfig fields are ReiTConfig fields; 8-/4-bit with ZeRO-3 or full fine-tuning fail at parse time."""
    import rella_hf.models
    from rella_hf.training import load_model_for_training

    config = parse_config(["--config", str(REPO / "trainer_configs" / "ml-1m_K30_mixed_vicuna13b_8bit.yaml"),
                           "--output_dir", str(tmp_path / "q"), "--bf16", "false"])
    assert config.load_in_8bit and not config.load_in_4bit and config.dtype == "bfloat16"
    four = parse_config(["--config", str(REPO / "trainer_configs" / "ml-1m_K30_mixed_vicuna13b_4bit.yaml"),
                         "--output_dir", str(tmp_path / "q4"), "--bf16", "false"])
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4"
    seen = {}
    monkeypatch.setattr(rella_hf.models, "load_model", lambda path, **kwargs: (seen.update(kwargs), (torch.nn.Linear(1, 1), None))[1])
    load_model_for_training(_config(tmp_path, model_name_or_path="org/model", model_revision="v2",
                                    attn_implementation="eager", load_in_4bit=True, bnb_4bit_quant_type="fp4",
                                    use_bnb_nested_quant=True, dtype="float16"))
    assert seen == {"dtype": "float16", "revision": "v2", "attn_implementation": "eager", "load_in_8bit": False,
                    "load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": True,
                    "trust_remote_code": False}
    assert _config(tmp_path, model_dtype="float16").dtype == "float16"  # the deprecated alias still works
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ConfigError, match=r"load_in_8bit does not work under DeepSpeed ZeRO-3.*multi_gpu.yaml \(DDP\) or "
                                          r"deepspeed_zero2.yaml \(ZeRO-2\)"):
        _config(tmp_path, load_in_8bit=True, bf16=False)
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert _config(tmp_path, load_in_8bit=True, bf16=False).load_in_8bit
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    with pytest.raises(ConfigError, match="load_in_4bit quantizes frozen base weights"):
        _config(tmp_path, load_in_4bit=True, finetuning="full")
    with pytest.raises(ConfigError, match="choose one"):
        _config(tmp_path, load_in_4bit=True, load_in_8bit=True)


@pytest.mark.parametrize("float32_attention", [True, False])
def test_cpu_bf16_training_runs_its_attention_in_float32_unless_told_not_to(tmp_path, prompt_datasets,
                                                                           float32_attention):
    from rella_hf.training import build_trainer, load_model_for_training
    from rella_hf.training.attention import FLOAT32_CPU_TRAINING_SDPA

    config = _config(tmp_path, bf16=True, cpu_float32_attention=float32_attention)
    model, tokenizer = load_model_for_training(config)
    trainer = build_trainer(config, build_training_data(config, prompt_datasets), model, tokenizer)
    expected = FLOAT32_CPU_TRAINING_SDPA if float32_attention else "sdpa"
    assert trainer.model.get_base_model().config._attn_implementation == expected


def test_deepspeed_on_a_cpu_only_machine_trains_in_float32(tmp_path, monkeypatch):
    import rella_hf.models

    monkeypatch.setattr(rella_hf.models, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    if torch.accelerator.current_accelerator() is not None:
        pytest.skip("an accelerator is present")
    assert _config(tmp_path).bf16 is False


def test_total_batch_size_sets_gradient_accumulation(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = _config(tmp_path, per_device_train_batch_size=4, total_batch_size=256)
    assert config.gradient_accumulation_steps == 64
    assert config.bf16 is hardware_supports_bf16() and config.learning_rate == pytest.approx(1e-3)
    assert config.accumulation_steps_for(256, world_size=2) == 32
    with pytest.raises(ConfigError, match="not a multiple"):
        _config(tmp_path, per_device_train_batch_size=3, total_batch_size=256)


@pytest.mark.parametrize("bad, match", [
    ({"train_type": "both"}, "train_type='both'"),
    ({"test_type": "mixed"}, "test_type='mixed'"),
    ({"shots": 100, "pool_size": 50}, "exceeds pool_size"),
    ({"lora_dropout": 1.5}, "lora_dropout"),
])
def test_bad_config_values_are_refused(tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        _config(tmp_path, **bad)


def test_lora_config_follows_the_fields(tmp_path):
    peft_config = lora_config(_config(tmp_path, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj"]))
    assert (peft_config.r, peft_config.lora_alpha, set(peft_config.target_modules)) == (4, 8, {"q_proj"})
    assert peft_config.task_type == "CAUSAL_LM"


def test_lora_on_the_top_layers_adapts_only_them_and_the_backward_stops_there(tmp_path, prompt_datasets):
    from rella_hf.training import build_trainer, load_model_for_training

    config = _config(tmp_path, top_layers=1, lora_target_modules=["q_proj", "v_proj", "down_proj"])
    assert config.reit_settings()["top_layers"] == 1
    model, tokenizer = load_model_for_training(config)
    assert model.config.num_hidden_layers == 2
    trainer = build_trainer(config, build_training_data(config, prompt_datasets), model, tokenizer)
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in trainer.model.named_parameters()
               if "lora_" in name}
    assert adapted == {"1"}
    # Layer 0 holds no trainable weight: autograd must not run its backward at all.
    reached = []
    layer0 = trainer.model.get_base_model().model.layers[0]
    layer0.register_full_backward_hook(lambda *args: reached.append(0))
    layer1 = trainer.model.get_base_model().model.layers[1]
    layer1.register_full_backward_hook(lambda *args: reached.append(1))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch).backward()
    assert reached == [1]
    with pytest.raises(ConfigError, match="exceeds the model's 2 decoder layers"):
        lora_config(_config(tmp_path, top_layers=3), num_layers=2)
    with pytest.raises(ConfigError, match="top_layers=0"):
        _config(tmp_path, top_layers=0)


def test_top_layers_find_the_decoder_blocks_under_an_adapter_and_refuse_a_model_without_them():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from rella_hf.errors import ConfigError
    from rella_hf.training.tiny import TINY_LLAMA_SHAPE
    from rella_hf.training.top_layers import decoder_layers

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, **TINY_LLAMA_SHAPE))
    assert decoder_layers(model) == list(model.model.layers)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert decoder_layers(wrapped) == list(model.model.layers)
    with pytest.raises(ConfigError, match="no decoder layers"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_full_finetuning_trains_only_the_top_layers_and_writes_a_whole_model(tmp_path, prompt_datasets, monkeypatch):
    import torch
    import transformers.trainer
    from safetensors.torch import load_file

    from rella_hf.errors import ModelError
    from rella_hf.models import adapter_compute_dtype, load_tuned_model
    from rella_hf.training import load_model_for_training
    from rella_hf.training.attention import FLOAT32_CPU_TRAINING_SDPA

    config = _config(tmp_path, finetuning="full", top_layers=1, bf16=True, learning_rate=1e-3, eval_size=24,
                     compute_eval_loss=False, max_steps=2, eval_strategy="steps", eval_steps=1, save_strategy="steps",
                     save_steps=1, load_best_model_at_end=True, metric_for_best_model="auc")
    warnings = []
    monkeypatch.setattr(transformers.trainer.logger, "warning", lambda message, *args: warnings.append(message))
    assert (config.base_dtype, config.compute_dtype) == ("float32", "bfloat16")  # float32 master weights
    data = build_training_data(config, prompt_datasets)
    model, tokenizer = load_model_for_training(config)
    assert model.dtype == torch.float32
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    result = train_on_data(config, data, model, tokenizer)
    out = result.output_dir
    # The tiny model ties its LM head to the embeddings: restoring the best checkpoint is complete.
    assert result.metrics["best_checkpoint"] and not any("missing keys" in message for message in warnings), warnings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    # float32 master weights under bf16 autocast still get the float32 CPU training attention ...
    assert model.config._attn_implementation == FLOAT32_CPU_TRAINING_SDPA
    # ... which the written model does not name: it loads wherever rella-hf is not imported.
    assert FLOAT32_CPU_TRAINING_SDPA not in (out / "config.json").read_text()
    assert (out / "model.safetensors").is_file() and not (out / "adapter_model.safetensors").exists()
    saved = load_file(out / "model.safetensors")
    changed = {name for name, tensor in saved.items() if not torch.equal(tensor, before[name])}
    assert changed and all(name.startswith(("model.layers.1.", "model.norm.")) for name in changed), changed
    assert not any(name.startswith("model.layers.0.") or "embed" in name for name in changed)
    assert adapter_compute_dtype(out) == "bfloat16"
    reloaded, _ = load_tuned_model(out)  # a whole model, in the precision it trained in
    assert reloaded.dtype == torch.bfloat16 and not hasattr(reloaded, "peft_config")
    reloaded_weight = reloaded.state_dict()["model.layers.1.mlp.down_proj.weight"]
    assert torch.equal(reloaded_weight, saved["model.layers.1.mlp.down_proj.weight"].to(torch.bfloat16))
    with pytest.raises(ModelError, match="neither adapter_config.json"):
        load_tuned_model(tmp_path)
    with pytest.raises(ConfigError, match="finetuning='partial'"):
        _config(tmp_path, finetuning="partial")
    with pytest.raises(ConfigError, match="push_to_hub publishes LoRA adapters"):
        _config(tmp_path, finetuning="full", push_to_hub=True, hub_model_id="someone/run")


def test_every_shipped_trainer_config_parses_with_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    names = sorted(path.name for path in (REPO / "trainer_configs").glob("*.yaml"))
    for dataset in ("ml-1m", "ml-25m", "BookCrossing"):
        for K in (5, 10, 30):
            for train_type in ("simple", "mixed"):
                assert f"{dataset}_K{K}_{train_type}.yaml" in names
    for name in names:
        config = parse_config(["--config", str(REPO / "trainer_configs" / name), "--output_dir", str(tmp_path / name),
                               "--shots", "64", "--per_device_train_batch_size", "4", "--bf16", "false"])
        assert config.shots == 64 and config.output_dir == str(tmp_path / name)
        if name.startswith(("ml-1m", "ml-25m", "BookCrossing")):
            assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
            assert config.total_batch_size == 256 and config.gradient_accumulation_steps == 64
            assert config.metric_for_best_model == "auc" and config.load_best_model_at_end


def test_model_source_and_prompt_wrapper_resolution(tmp_path, smollm2_dir, tokenizer):
    from rella_hf.training.trainer import check_prompt_wrapping, resolve_model_source

    path, chat_model = resolve_model_source(_config(tmp_path))
    assert Path(path).name == "tiny-random-llama-seed0" and chat_model == "smollm2-135m-instruct"
    assert resolve_model_source(_config(tmp_path, model_name_or_path="org/model"))[1] == "org/model"
    assert resolve_model_source(_config(tmp_path, chat_model=None))[1] is None
    check_prompt_wrapping(tokenizer, str(smollm2_dir))  # same template: accepted
    with pytest.raises(ConfigError, match="wraps prompts differently"):
        check_prompt_wrapping(tokenizer, None)  # Vicuna-wrapped prompts for a chat-template model


# ------------------------------------------------------------------------------------------
# Tokenization agrees with scoring
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokenizer_name", ["smollm2", "sentencepiece_bpe"])
def test_first_completion_token_is_the_token_scoring_reads(request, tokenizer_name):
    from rella_hf.scoring import answer_token_ids, encode_prompts

    # SmolLM2: byte-level BPE with a chat template; the other: Metaspace BPE adding BOS, Vicuna wrapper.
    tokenizer = request.getfixturevalue("smollm2_tokenizer" if tokenizer_name == "smollm2" else "tiny_bpe_tokenizer")
    splits = {kind: _prompt_split(tokenizer, 40, name, 1, shuffle=kind == "sequential")
              for kind, name in (("simple", "recent"), ("sequential", "semantic"))}
    rows = build_train_rows(splits["simple"], splits["sequential"], "mixed", shots=12, pool_size=40, seed=42)
    tokenized = tokenize_rows(rows, tokenizer)
    yes_ids, no_ids = answer_token_ids(tokenizer, rows[0]["prompt"])
    for row in tokenized:
        prompt_ids = encode_prompts(tokenizer, [row["prompt"]])[0]
        start = row["completion_mask"].index(1)
        # The model is trained on exactly the ids scoring feeds, then the answer token it compares.
        assert row["input_ids"][:start] == prompt_ids
        assert row["input_ids"][start] == (yes_ids[0] if row["label"] else no_ids[0])
        assert row["input_ids"][-1] == tokenizer.eos_token_id
        assert sum(row["completion_mask"]) == len(row["input_ids"]) - len(prompt_ids)


def test_rows_longer_than_max_length_are_refused(tokenizer, prompt_datasets):
    rows = build_eval_rows(prompt_datasets["simple"]["validation"], 4, "simple")
    with pytest.raises(ConfigError, match="longer than max_length=16"):
        tokenize_rows(rows, tokenizer, max_length=16)


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def test_training_writes_an_adapter_that_scores_and_ctr_metrics(tmp_path, prompt_datasets):
    from peft import PeftModel
    from safetensors.torch import load_file

    from rella_hf.models import load_model
    from rella_hf.scoring import CTRScorer
    from rella_hf.training import CTREvalCallback, load_model_for_training

    config = _config(tmp_path, eval_size=24, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                     save_steps=2, load_best_model_at_end=True, metric_for_best_model="auc")
    data = build_training_data(config, prompt_datasets)
    model, tokenizer = load_model_for_training(config)
    base_before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    result = train_on_data(config, data, model, tokenizer)
    out = result.output_dir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "training_config.json",
                 "metrics.json"):
        assert (out / name).is_file(), name

    # The base weights were never trained (LoRA wraps the same modules in place).
    trained_base = {name.replace(".base_layer", ""): tensor for name, tensor in model.state_dict().items()
                    if "lora_" not in name}
    assert trained_base.keys() == base_before.keys()
    assert all(torch.equal(trained_base[name], base_before[name]) for name in base_before)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_rows"] == 16 and metrics["eval_rows"] == 24
    assert metrics["gradient_accumulation_steps"] == 2 and metrics["global_step"] == 4
    assert [entry["step"] for entry in metrics["eval_history"]] == [2, 4]
    for entry in metrics["eval_history"]:
        assert 0.0 <= entry["eval_auc"] <= 1.0 and entry["eval_logloss"] > 0 and 0.0 <= entry["eval_acc"] <= 1.0
    best = max(metrics["eval_history"], key=lambda entry: entry["eval_auc"])
    assert metrics["best_metric"] == pytest.approx(best["eval_auc"])
    assert metrics["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    # The final metrics are those of the best checkpoint, which load_best_model_at_end restored.
    assert metrics["final_eval"]["eval_auc"] == pytest.approx(best["eval_auc"])
    settings = json.loads((out / "training_config.json").read_text())
    assert settings["reit"]["train_type"] == "mixed" and settings["training_arguments"]["learning_rate"] == 1e-3

    # LoRA B starts at zero: training moved it. The adapter touches q_proj/v_proj only.
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert {key.split(".")[-3] for key in adapter} == {"q_proj", "v_proj"}
    assert any(tensor.abs().sum() > 0 for key, tensor in adapter.items() if "lora_B" in key)

    # The saved adapter loads onto a fresh base model and scores validation prompts.
    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    from rella_hf.models import adapter_compute_dtype

    assert adapter_compute_dtype(out) == config.base_dtype  # scored in the precision it was trained in
    base, saved_tokenizer = load_model(base_path, dtype=adapter_compute_dtype(out), device="cpu")
    reloaded = PeftModel.from_pretrained(base, str(out))
    scores = CTRScorer(reloaded, saved_tokenizer, batch_size=2).score(data.eval["prompt"][:4], progress=False)
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
    # Reloaded, it reproduces the final evaluation's AUC.
    callback = CTREvalCallback(data.eval["prompt"], data.eval["label"], saved_tokenizer, batch_size=8)
    assert callback.compute(reloaded)["eval_auc"] == pytest.approx(metrics["final_eval"]["eval_auc"], abs=1e-6)


def test_ctr_only_evaluation_skips_the_loss_loop_and_still_selects_the_best(tmp_path, prompt_datasets):
    config = _config(tmp_path, eval_size=24, compute_eval_loss=False, max_steps=3, eval_strategy="steps",
                     eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                     metric_for_best_model="auc")
    metrics = train_on_data(config, build_training_data(config, prompt_datasets)).metrics
    assert [entry["step"] for entry in metrics["eval_history"]] == [1, 2, 3]
    assert all("eval_loss" not in entry for entry in metrics["eval_history"])
    best = max(metrics["eval_history"], key=lambda entry: entry["eval_auc"])  # first of equal maxima
    assert metrics["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert metrics["final_eval"]["eval_auc"] == pytest.approx(best["eval_auc"])


def test_the_final_models_validation_scores_are_those_of_the_step_it_came_from():
    """The end-of-training calibration reuses these scores, so they must belong to the model the run ends with."""
    from types import SimpleNamespace

    from rella_hf.training.callbacks import CTREvalCallback, final_model_scores, final_model_step

    callback = CTREvalCallback(["a", "b"], [0, 1], tokenizer=None)
    callback.scores_by_step = {2: np.array([0.1, 0.9]), 4: np.array([0.2, 0.8])}

    def trainer(best=None, evaluated=(2, 4), global_step=4, load_best=True):
        state = SimpleNamespace(best_model_checkpoint=best, global_step=global_step,
                                log_history=[{"step": step, "eval_auc": 0.5} for step in evaluated])
        return SimpleNamespace(state=state, args=SimpleNamespace(load_best_model_at_end=load_best),
                               callback_handler=SimpleNamespace(callbacks=[object(), callback]))

    restored = trainer(best="out/checkpoint-2")  # load_best_model_at_end restored step 2's weights
    assert final_model_step(restored) == 2 and final_model_scores(restored).tolist() == [0.1, 0.9]
    last = trainer(load_best=False)  # the last step was evaluated and the model stays as it is
    assert final_model_step(last) == 4 and final_model_scores(last).tolist() == [0.2, 0.8]
    moved_on = trainer(load_best=False, evaluated=(2,), global_step=5)  # trained past its last evaluation
    assert final_model_step(moved_on) is None and final_model_scores(moved_on) is None
    resumed = trainer(best="out/checkpoint-6", evaluated=(6, 8), global_step=8)  # scored before a resume
    assert final_model_step(resumed) == 6 and final_model_scores(resumed) is None


def test_token_statistics_are_reduced_once_per_log_not_per_micro_step(tmp_path, prompt_datasets):
    """R6: 8 micro-steps (4 optimizer steps of 2), logged every 2 steps: 2 reductions, no gathers."""
    from rella_hf.training import build_trainer, load_model_for_training

    config = _config(tmp_path, logging_steps=2, bf16=False)
    model, tokenizer = load_model_for_training(config)
    trainer = build_trainer(config, build_training_data(config, prompt_datasets), model, tokenizer)
    calls = {"reduce": 0, "gather": 0, "gather_for_metrics": 0}
    for name in calls:
        original = getattr(trainer.accelerator, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(trainer.accelerator, name, spy)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert trainer.state.global_step == 4 and config.gradient_accumulation_steps == 2 and len(logged) == 2
    assert calls == {"reduce": 2, "gather": 0, "gather_for_metrics": 0}
    for entry in logged:
        assert 0.0 <= entry["mean_token_accuracy"] <= 1.0 and entry["entropy"] > 0
    # Every input token of the 16 rows was counted (attention mask sums), once.
    rows = trainer.train_dataset["input_ids"]
    assert logged[-1]["num_tokens"] == sum(len(ids) for ids in rows)


def test_validation_scoring_mid_training_uses_no_grad_not_inference_mode(tmp_path, prompt_datasets):
    """R1: tensors made under inference_mode cannot be saved for backward (ZeRO-3 gathers into them)."""
    from rella_hf.training import CTREvalCallback, build_trainer, load_model_for_training

    config = _config(tmp_path, bf16=False, max_steps=2)
    data = build_training_data(config, prompt_datasets)
    model, tokenizer = load_model_for_training(config)
    trainer = build_trainer(config, data, model, tokenizer)
    modes = []
    hook = trainer.model.get_input_embeddings().register_forward_pre_hook(
        lambda module, args: modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled())))
    rows = prompt_datasets["sequential"]["validation"]
    callback = CTREvalCallback(rows["prompt"][:8], rows["label"][:8], tokenizer, batch_size=4)
    callback.compute(trainer.model)
    scoring_modes = set(modes)
    hook.remove()
    assert scoring_modes == {(False, False)}
    trainer.train()  # a training step right after the scoring still builds its graph
    assert trainer.state.global_step == 2


class _Killed(RuntimeError):
    """Raised by the test callback to stop a run right after a checkpoint, like a kill would."""


@pytest.mark.parametrize("precision", [{"bf16": False}, {"bf16": True}, {"bf16": False, "train_sampling_strategy": "random"}])
def test_kill_and_resume_reaches_the_same_adapter_as_one_run(tmp_path, prompt_datasets, precision):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise _Killed(f"killed after checkpoint-{state.global_step}")

    # 4 shots = 8 rows, 4 per optimizer step, 2 epochs: 4 steps; the kill lands mid-way through
    # the second epoch (step 3), so resuming must skip into the reshuffled epoch.
    common = dict(shots=4, num_train_epochs=2, save_strategy="steps", save_steps=3, lora_dropout=0.1, **precision)
    data = build_training_data(_config(tmp_path, **common), prompt_datasets)

    whole = train_on_data(_config(tmp_path, output_dir=str(tmp_path / "whole"), **common), data)
    assert whole.metrics["global_step"] == 4

    interrupted_dir = str(tmp_path / "interrupted")
    with pytest.raises(_Killed):
        train_on_data(_config(tmp_path, output_dir=interrupted_dir, **common), data, callbacks=[KillAfterSave()])
    assert (Path(interrupted_dir) / "checkpoint-3").is_dir()
    assert not (Path(interrupted_dir) / "adapter_model.safetensors").exists()
    resumed = train_on_data(_config(tmp_path, output_dir=interrupted_dir, resume=True, **common), data)
    assert resumed.metrics["resumed_from"].endswith("checkpoint-3") and resumed.metrics["global_step"] == 4

    expected = load_file(str(whole.output_dir / "adapter_model.safetensors"))
    got = load_file(str(resumed.output_dir / "adapter_model.safetensors"))
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.allclose(expected[key], got[key], atol=1e-6), key
    # And the run really trained: a run stopped at step 3 differs from the final adapter.
    at_kill = load_file(str(Path(interrupted_dir) / "checkpoint-3" / "adapter_model.safetensors"))
    assert any(not torch.allclose(at_kill[key], got[key]) for key in got)


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path, prompt_datasets):
    config = _config(tmp_path, resume=True, max_steps=1)
    result = train_on_data(config, build_training_data(config, prompt_datasets))
    assert result.metrics["resumed_from"] is None and result.metrics["global_step"] == 1


def test_rerunning_a_finished_run_keeps_its_training_time(tmp_path, prompt_datasets):
    config = _config(tmp_path, save_strategy="steps", save_steps=4)  # 16 rows, 4 per step: 4 steps, saved at the end
    data = build_training_data(config, prompt_datasets)
    first = train_on_data(config, data)
    assert first.metrics["train"]["train_runtime"] > 0 and first.metrics["resumed_from"] is None
    # A rerun with resume finds the final checkpoint and trains nothing: the run's own timing stays.
    again = train_on_data(_config(tmp_path, save_strategy="steps", save_steps=4, resume=True), data)
    assert first.metrics["global_step"] == again.metrics["global_step"] == 4
    assert again.metrics["train"] == first.metrics["train"] and again.metrics["resumed_from"] is None
    written = json.loads((Path(config.output_dir) / "metrics.json").read_text())
    assert written["train"]["train_runtime"] == first.metrics["train"]["train_runtime"]


def test_eval_strategy_without_an_eval_subset_is_refused(tmp_path, prompt_datasets):
    config = _config(tmp_path, eval_size=0, eval_strategy="steps", eval_steps=1)
    data = build_training_data(config, prompt_datasets)
    assert data.eval is None
    with pytest.raises(ConfigError, match="eval_size=0"):
        train_on_data(config, data)


def test_train_script_help_lists_the_reit_fields(capsys):
    import runpy

    main = runpy.run_path(str(REPO / "train.py"), run_name="train_script")["main"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--train_type", "--test_type", "--shots", "--pool_size", "--total_batch_size", "--resume",
                 "--lora_r", "--model_name_or_path", "--save_steps", "--load_in_8bit", "--load_in_4bit",
                 "--attn_implementation", "--model_revision", "--bnb_4bit_quant_type", "--dtype"):
        assert flag in shown


def test_rella_hf_train_help_lists_trls_model_fields(capsys):
    from rella_hf.cli import main

    try:
        code = main(["train", "--help"])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code in (0, None)
    shown = capsys.readouterr().out
    for flag in ("--load_in_8bit", "--load_in_4bit", "--attn_implementation", "--model_revision"):
        assert flag in shown


# ------------------------------------------------------------------------------------------
# Sanity task and early stopping
# ------------------------------------------------------------------------------------------


def test_sanity_relabel_follows_the_shown_ratings(prompt_datasets):
    from rella_hf.prompts import answer_completion
    from rella_hf.training.sanity import relabel_by_shown_ratings, shown_rating_means

    split = prompt_datasets["simple"]["train"]
    relabelled = relabel_by_shown_ratings(split, threshold=3.5)
    means = [np.mean(ratings) if len(ratings) else 0.0 for ratings in split["history_ratings"]]
    np.testing.assert_allclose(shown_rating_means(split), means, rtol=1e-6)
    assert relabelled["label"] == [int(mean >= 3.5) for mean in means]
    assert 0 < sum(relabelled["label"]) < len(relabelled)  # both answers occur
    assert relabelled["original_label"] == split["label"] and relabelled["prompt"] == split["prompt"]
    assert relabelled["completion"] == [answer_completion(p, bool(y)) for p, y in
                                        zip(relabelled["prompt"], relabelled["label"])]
    with pytest.raises(ConfigError, match="history_ratings"):
        relabel_by_shown_ratings(split.remove_columns("history_ratings"))


def test_sanity_auc_by_margin_separates_approximate_from_blind_readers():
    from rella_hf.training.sanity import auc_by_margin

    rng = np.random.default_rng(0)
    means = rng.uniform(1.0, 5.0, 2000)
    labels = (means >= 3.5).astype(int)
    # An approximate reader: the right ranking blurred by noise that only matters near the threshold.
    approximate = 1 / (1 + np.exp(-(means + rng.normal(0, 0.3, means.size) - 3.5)))
    bands = auc_by_margin(labels, approximate, means, margins=(0.0, 1.0))
    assert bands[0]["n"] == 2000 and bands[1]["n"] == int((np.abs(means - 3.5) >= 1.0).sum())
    assert 0.9 < bands[0]["auc"] < 0.999 and bands[1]["auc"] == 1.0
    blind = auc_by_margin(labels, rng.uniform(size=means.size), means, margins=(0.0, 1.0))
    assert all(abs(band["auc"] - 0.5) < 0.06 for band in blind)
    assert auc_by_margin(labels, approximate, means, margins=(5.0,)) == [{"margin": 5.0, "n": 0, "auc": None}]


def test_a_tiny_model_fits_the_sanity_rows(tmp_path, prompt_datasets):
    """The test-sized sanity check: trained on the relabelled rows, the loss falls and the rows' AUC rises well above chance."""
    from rella_hf.metrics import ctr_metrics
    from rella_hf.training import CTREvalCallback, load_model_for_training
    from rella_hf.training.data import TrainingData
    from rella_hf.training.sanity import relabel_by_shown_ratings

    rows = build_train_rows(relabel_by_shown_ratings(prompt_datasets["simple"]["train"]), None, "simple",
                            shots=16, pool_size=60, seed=42)
    config = _config(tmp_path, train_type="simple", shots=16, num_train_epochs=30, learning_rate=5e-3,
                     lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                     lora_r=16, total_batch_size=8, per_device_train_batch_size=8, logging_steps=5, bf16=False)
    model, tokenizer = load_model_for_training(config)
    callback = CTREvalCallback(rows["prompt"], rows["label"], tokenizer, batch_size=8)
    before = ctr_metrics(np.asarray(rows["label"]), callback.score(model))
    result = train_on_data(config, TrainingData(rows, None, None), model, tokenizer)
    losses = [entry["loss"] for entry in result.metrics["log_history"]]
    after = ctr_metrics(np.asarray(rows["label"]), callback.score(model))
    # A 2-layer random model only starts to separate the rule (the real model: experiments/recipe.py).
    assert losses[-1] < losses[0]
    assert after["auc"] >= 0.8 and after["auc"] > before["auc"] + 0.2


def test_early_stopping_on_validation_auc(tmp_path, prompt_datasets):
    with pytest.raises(ConfigError, match="load_best_model_at_end"):
        _config(tmp_path, early_stopping_patience=1)
    config = _config(tmp_path, eval_size=24, compute_eval_loss=False, max_steps=12, eval_strategy="steps",
                     eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                     metric_for_best_model="auc", early_stopping_patience=1, learning_rate=0.0)
    metrics = train_on_data(config, build_training_data(config, prompt_datasets)).metrics
    # With a learning rate of 0 the AUC never improves on the first evaluation: one more, then stop.
    assert [entry["step"] for entry in metrics["eval_history"]] == [1, 2]
    assert metrics["global_step"] == 2 and metrics["best_checkpoint"].endswith("checkpoint-1")


@pytest.mark.slow
def test_training_from_an_exported_dataset_folder(tmp_path, models_in_isolated_cache):
    """A folder written by rella_hf.hub.export_dataset trains like the corpus it was built from."""
    from corpus_fixtures import write_ml1m

    import rella_hf
    from rella_hf import hub
    from rella_hf.training import run_training

    built = rella_hf.load_dataset("ml-1m", K=3, data_dir=write_ml1m(tmp_path / "data"))
    folder = hub.export_dataset(built, tmp_path / "published", permission_to_redistribute=True)
    config = _config(tmp_path, dataset=str(folder), K=3, train_type="simple", test_type="simple", shots=2,
                     pool_size=len(built["train"]), max_steps=1, total_batch_size=None)
    result = run_training(config)
    assert (result.output_dir / "adapter_model.safetensors").is_file() and result.metrics["train_rows"] == 2
    # Options asked of a published dataset are compared with those it was built with, not refused.
    loaded = rella_hf.load_dataset(str(folder), K=3, split="train", history_format="list", chat_model="smollm2-135m-instruct")
    assert loaded["prompt"] == built["train"]["prompt"]
    with pytest.raises(ConfigError, match="built with history_format='list', but history_format='lines'"):
        rella_hf.load_dataset(str(folder), K=3, history_format="lines")
    streamed = rella_hf.load_dataset(str(folder), K=3, split="train", streaming=True)
    assert next(iter(streamed))["prompt"] == built["train"][0]["prompt"]


def test_shipped_reit_recipe_is_the_measured_one(tmp_path, monkeypatch):
    """trainer_configs/ml-latest-small_K5_mixed_N2048.yaml claims the settings of the learning-curve run whose
    results it quotes; a drift between the file and the recorded run would make that claim false."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rows = [json.loads(line) for line in (REPO / "experiments" / "results" / "recipe.jsonl").read_text().splitlines()
            if line.strip()]
    measured = next(row for row in rows if row["setting"] == "ml-latest-small/ctr/lc-K5-mixed-N2048-seed42")
    config = parse_config(["--config", str(REPO / "trainer_configs" / "ml-latest-small_K5_mixed_N2048.yaml"),
                           "--output_dir", str(tmp_path / "run")])
    all_linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert measured["targets"] == "all" and list(config.lora_target_modules) == all_linear
    assert (config.dataset, config.K, config.train_type, config.shots, config.seed) == (
        measured["dataset"], measured["K"], measured["train_type"], measured["shots"], measured["seed"])
    assert (config.learning_rate, config.lora_r, config.total_batch_size, config.num_train_epochs, config.eval_size) == (
        measured["lr"], measured["lora_r"], measured["total_batch_size"], measured["epochs"], measured["eval_size"])
    assert config.lora_alpha == 2 * measured["lora_r"] and config.eval_steps == 32
    assert config.metric_for_best_model == "auc" and config.load_best_model_at_end
