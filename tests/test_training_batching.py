"""Tests of the fast training recipe: left-padded collation, the answer-only loss, the seeded
length-grouped order, and bf16 base weights with float32 LoRA weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rella_hf.training.collator import (  # noqa: E402
    IGNORE_INDEX,
    LeftPaddingCompletionCollator,
    answer_only_loss,
    answer_window,
)
from rella_hf.training.sampler import SeededLengthGroupedSampler  # noqa: E402


def _rows():
    return [
        {"input_ids": [5, 6, 7, 8, 9], "completion_mask": [0, 0, 0, 1, 1]},
        {"input_ids": [11, 12, 13], "labels": [IGNORE_INDEX, 13, 14]},  # labels win over a mask
        {"input_ids": [21, 22, 23, 24], "completion_mask": [0, 0, 1, 1]},
    ]


def test_collator_pads_on_the_left_and_labels_the_completion_only():
    rows = _rows()
    rows[1]["labels"] = [IGNORE_INDEX, IGNORE_INDEX, 13]
    batch = LeftPaddingCompletionCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [0, 0, 11, 12, 13], [0, 21, 22, 23, 24]]
    assert batch["attention_mask"].tolist() == [[1] * 5, [0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]
    # Positions count real tokens, as the scorer numbers a prompt.
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2], [0, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 9], [-100, -100, -100, -100, 13],
                                        [-100, -100, -100, 23, 24]]
    assert answer_window(batch["labels"]) == 3  # columns 2..4: column 2 predicts the first answer token
    assert LeftPaddingCompletionCollator(0, pad_to_multiple_of=8)(rows)["input_ids"].shape == (3, 8)


def test_collator_refuses_rows_without_an_answer_marker():
    from rella_hf.errors import ConfigError

    with pytest.raises(ConfigError, match="completion_mask"):
        LeftPaddingCompletionCollator(0)([{"input_ids": [1, 2]}])


def test_answer_only_loss_equals_the_full_logits_loss():
    torch.manual_seed(0)
    batch = LeftPaddingCompletionCollator(pad_token_id=0)(_rows())
    vocab = 30
    logits = torch.randn(3, batch["input_ids"].shape[1], vocab, requires_grad=True)
    full = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), batch["labels"][:, 1:].reshape(-1),
                                             ignore_index=IGNORE_INDEX)
    window = answer_window(batch["labels"])
    loss, tokens, entropy, correct = answer_only_loss(logits[:, -window:], batch["labels"])
    assert loss.item() == pytest.approx(full.item(), rel=1e-6)
    assert tokens.item() == 6 and entropy.item() > 0 and 0 <= correct.item() <= 6
    # With the Trainer's count over gradient accumulation the sum is divided by that count instead.
    summed, *_ = answer_only_loss(logits[:, -window:], batch["labels"], num_items_in_batch=8)
    assert summed.item() == pytest.approx(full.item() * 6 / 8, rel=1e-6)


def test_seeded_length_grouped_order_is_a_permutation_fixed_by_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(100, 600, size=400)
    sampler = SeededLengthGroupedSampler(lengths, batch_size=8, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(400))
    assert list(SeededLengthGroupedSampler(lengths, batch_size=8, seed=3)) == first  # a resumed run's order
    sampler.set_epoch(1)
    assert list(sampler) != first
    # Batches of 8 in that order hold similar lengths: far less padding than a random order.
    def padding(order):
        batches = np.asarray(order).reshape(-1, 8)
        return sum(int(lengths[b].max() * 8 - lengths[b].sum()) for b in batches)
    assert padding(first) < 0.2 * padding(np.random.default_rng(1).permutation(400))


def test_bf16_base_keeps_lora_weights_and_their_gradients_in_float32(tmp_path, tiny_bpe_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(tiny_bpe_tokenizer))
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())
    assert all(p.dtype == torch.bfloat16 for p in frozen.values())
    ids = torch.randint(3, len(tiny_bpe_tokenizer), (2, 12))
    out = model(input_ids=ids, logits_to_keep=3)
    out.logits.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable.values())


def test_uniform_lora_dropout_keeps_the_dropout_statistics_and_replaces_every_lora_dropout(tiny_bpe_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from rella_hf.training.dropout import UniformDropout, use_uniform_lora_dropout

    torch.manual_seed(0)
    dropout = UniformDropout(0.25).train()
    out = dropout(torch.ones(200_000))
    assert out.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs((out == 0).float().mean().item() - 0.25) < 0.01 and abs(out.mean().item() - 1.0) < 0.01
    assert torch.equal(dropout.eval()(torch.ones(5)), torch.ones(5))

    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(tiny_bpe_tokenizer))
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert use_uniform_lora_dropout(model) == 4  # 2 layers x (q, v)
    assert not any(type(m) is torch.nn.Dropout for name, m in model.named_modules() if "lora_dropout" in name)


def test_dropout_bits_are_uniform_in_every_16_bit_piece_of_the_random_words():
    from rella_hf.training.dropout import keep_mask, uniform_int16

    torch.manual_seed(0)
    values = uniform_int16(300_001)
    assert values.shape == (300_001,) and values.dtype == torch.int16
    pieces = values[:300_000].view(-1, 3).to(torch.int32) & 0xFFFF  # the three pieces of each 64-bit word
    bits = (pieces.unsqueeze(-1) >> torch.arange(16)) & 1
    frequencies = bits.float().mean(0)  # (piece, bit); the top piece of an int64 lacks its sign bit
    assert torch.all((frequencies - 0.5).abs() < 0.01), frequencies
    for p in (0.05, 0.3):
        dropped = 1 - keep_mask((500, 400), p).float().mean().item()
        assert abs(dropped - p) < 0.005
    torch.manual_seed(1)
    first = keep_mask((64, 64), 0.1)
    torch.manual_seed(1)
    assert torch.equal(first, keep_mask((64, 64), 0.1))  # follows the global seed, so runs replay


def _tiny_llama(tokenizer, dtype, attn_implementation="sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(tokenizer), attn_implementation=attn_implementation)
    return LlamaForCausalLM(config).to(dtype)


def test_float32_cpu_training_attention_changes_training_passes_only(tiny_bpe_tokenizer, monkeypatch):
    import torch.nn.functional as F

    from rella_hf.training.attention import FLOAT32_CPU_TRAINING_SDPA, use_float32_cpu_training_attention

    model = _tiny_llama(tiny_bpe_tokenizer, torch.bfloat16)
    ids = torch.randint(5, 200, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    assert use_float32_cpu_training_attention(model)
    assert model.config._attn_implementation == FLOAT32_CPU_TRAINING_SDPA

    kernel_dtypes = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        output = sdpa(*args, **kwargs)
        kernel_dtypes.append(output.dtype)  # what the kernel ran in, after any autocast
        return output

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(before, after) and set(kernel_dtypes) == {torch.bfloat16}  # scoring passes: unchanged
    kernel_dtypes.clear()
    logits = model(input_ids=ids, attention_mask=mask).logits
    assert set(kernel_dtypes) == {torch.float32} and logits.dtype == torch.bfloat16
    logits.float().sum().backward()
    kernel_dtypes.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the Trainer runs bf16 steps
        model(input_ids=ids, attention_mask=mask).logits.float().sum().backward()
    assert set(kernel_dtypes) == {torch.float32}
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_float32_cpu_training_attention_leaves_float32_and_non_sdpa_models_alone(tiny_bpe_tokenizer):
    from rella_hf.training.attention import use_float32_cpu_training_attention

    float32_model = _tiny_llama(tiny_bpe_tokenizer, torch.float32)
    eager_model = _tiny_llama(tiny_bpe_tokenizer, torch.bfloat16, attn_implementation="eager")
    assert not use_float32_cpu_training_attention(float32_model)
    assert not use_float32_cpu_training_attention(eager_model)
    assert float32_model.config._attn_implementation == "sdpa"
    assert eager_model.config._attn_implementation == "eager"


def test_float32_cpu_training_attention_catches_autocast_of_float32_master_weights(tiny_bpe_tokenizer, monkeypatch):
    # Full fine-tuning: float32 weights under bf16 autocast. RoPE promotes query and key back to
    # float32 while value stays bf16, and autocast would run the kernel (and its slow backward) in bf16.
    import torch.nn.functional as F

    from rella_hf.training.attention import use_float32_cpu_training_attention

    model = _tiny_llama(tiny_bpe_tokenizer, torch.float32)
    ids = torch.randint(5, 200, (3, 12))
    kernel_dtypes = []
    sdpa = F.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        output = sdpa(*args, **kwargs)
        kernel_dtypes.append(output.dtype)
        return output

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids).logits.float().sum().backward()
    assert set(kernel_dtypes) == {torch.bfloat16}  # what plain SDPA does under autocast
    assert use_float32_cpu_training_attention(model, autocast_bf16=True)
    kernel_dtypes.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids).logits.float().sum().backward()
        with torch.no_grad():
            model(input_ids=ids)  # an evaluation pass keeps autocast's bf16 kernel
    assert kernel_dtypes == [torch.float32] * model.config.num_hidden_layers + [torch.bfloat16] * model.config.num_hidden_layers
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
