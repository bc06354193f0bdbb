"""The common prefix of a batch run once: the same scores, losses and gradients as running every row whole."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rella_hf.shared_prefix import shared_prefix_length  # noqa: E402
from rella_hf.training.collator import IGNORE_INDEX, LeftPaddingCompletionCollator, answer_only_loss  # noqa: E402

PREFIX = list(range(40, 52))  # 12 tokens every row starts with, like a chat system turn


def _tiny_llama(vocab: int = 64, layers: int = 3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=vocab, attn_implementation="sdpa")
    return LlamaForCausalLM(config).float()


def _rows(seed: int = 0, count: int = 5):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        body = rng.integers(3, 40, size=int(rng.integers(4, 12))).tolist()
        answer = [int(rng.integers(52, 64)), 2]
        rows.append({"input_ids": PREFIX + body + answer,
                     "labels": [IGNORE_INDEX] * (len(PREFIX) + len(body)) + answer})
    return rows


def test_shared_prefix_length_leaves_every_row_a_token_and_skips_short_prefixes():
    assert shared_prefix_length([list(range(20)), list(range(20))]) == 19  # each keeps its last token
    assert shared_prefix_length([list(range(20)), list(range(10)) + [99] * 10]) == 10
    assert shared_prefix_length([list(range(20)), list(range(5)) + [99] * 15]) == 0  # 5 < the minimum of 8
    assert shared_prefix_length([list(range(20)), list(range(5)) + [99] * 15], minimum=4) == 5
    assert shared_prefix_length([[1, 2, 3]]) == 0
    assert shared_prefix_length([]) == 0


def test_collator_splits_off_the_shared_prefix_and_never_a_labelled_token():
    rows = _rows()
    plain = LeftPaddingCompletionCollator(pad_token_id=0)(rows)
    shared = LeftPaddingCompletionCollator(pad_token_id=0, shared_prefix=True)(rows)
    skip = len(PREFIX)
    assert shared["prefix_ids"].tolist() == [PREFIX]
    assert shared["input_ids"].shape == (len(rows), plain["input_ids"].shape[1] - skip)
    assert shared["attention_mask"].shape == (len(rows), plain["input_ids"].shape[1])
    assert shared["attention_mask"][:, :skip].eq(1).all()
    # Positions continue after the prefix exactly as in the whole row.
    for row in range(len(rows)):
        real = plain["attention_mask"][row].bool()
        rest = shared["attention_mask"][row, skip:].bool()
        assert plain["position_ids"][row][real][skip:].tolist() == shared["position_ids"][row][rest].tolist()
    assert shared["logits_to_keep"] == plain["logits_to_keep"]
    # A row whose answer starts inside what the rows share keeps its answer out of the prefix.
    short = [{"input_ids": PREFIX + [60, 2], "labels": [IGNORE_INDEX] * 11 + [51, 60, 2]},
             {"input_ids": PREFIX + [61, 2], "labels": [IGNORE_INDEX] * 11 + [51, 61, 2]}]
    assert LeftPaddingCompletionCollator(0, shared_prefix=True)(short)["prefix_ids"].shape[1] == 11


def test_training_loss_and_gradients_equal_with_and_without_the_shared_prefix():
    from rella_hf.training.trainer import ReiTTrainer

    model = _tiny_llama()
    model.train()
    rows = _rows(seed=1)
    results = []
    for share in (False, True):
        batch = LeftPaddingCompletionCollator(pad_token_id=0, shared_prefix=share)(rows)
        model.zero_grad()
        window = int(batch["logits_to_keep"])
        if share:
            outputs = ReiTTrainer._after_shared_prefix(model, batch["prefix_ids"], batch, window)
        else:
            outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            position_ids=batch["position_ids"], use_cache=False, logits_to_keep=window)
        loss = answer_only_loss(outputs.logits, batch["labels"])[0]
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (plain_loss, plain_grads), (shared_loss, shared_grads) = results
    assert shared_loss == pytest.approx(plain_loss, rel=1e-5)
    for plain, shared in zip(plain_grads, shared_grads):
        torch.testing.assert_close(shared, plain, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in shared_grads[:3])  # the embeddings learn through the prefix too


def test_scorer_scores_equal_with_and_without_the_shared_prefix(tiny_bpe_tokenizer):
    from rella_hf.scoring import CTRScorer

    model = _tiny_llama(vocab=len(tiny_bpe_tokenizer), layers=2)
    stem = "USER: The user watched the following movies in the past, and rated them: "
    prompts = [f"{stem}{title} ({stars} stars). Will the user like it? ASSISTANT:"
               for title, stars in [("Heat", 4), ("Alien", 2), ("Fargo", 5), ("Up", 1), ("Jaws", 3)]]
    plain = CTRScorer(model, tiny_bpe_tokenizer, batch_size=2, share_prefix=False, batch_invariant=False)
    shared = CTRScorer(model, tiny_bpe_tokenizer, batch_size=2, share_prefix=True, batch_invariant=False)
    assert shared.share_prefix and shared._window_prefix(shared._encode(prompts)) is not None
    np.testing.assert_allclose(shared.score(prompts, progress=False), plain.score(prompts, progress=False),
                               rtol=0, atol=1e-5)
    # A batch-invariant scorer never shares: the split point would depend on the other prompts.
    assert not CTRScorer(model, tiny_bpe_tokenizer, share_prefix=True, batch_invariant=True).share_prefix
