"""Replaying the frozen bottom layers' output: the tuned model's scores are those of running it whole."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rella_hf.frozen_states import FrozenLayerStates, bottom_layers_fingerprint  # noqa: E402
from rella_hf.scoring import CTRScorer  # noqa: E402

PROMPTS = [f"USER: The user rated {title} with {stars} stars. Will the user like it? ASSISTANT:"
           for title, stars in [("Heat", 4), ("Alien", 2), ("Fargo", 5), ("Up", 1), ("Jaws", 3), ("Big", 4)]]


def _tiny_llama(vocab: int, layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=vocab, attn_implementation="sdpa")
    return LlamaForCausalLM(config).float().eval()


def _perturbed(model, layers):
    changed = copy.deepcopy(model)
    with torch.no_grad():
        for layer in layers(changed.model.layers):
            for parameter in layer.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
    return changed


@pytest.mark.parametrize("batch_invariant", [False, True])
def test_a_fine_tune_of_the_top_layers_scores_the_same_from_replayed_bottom_states(tiny_bpe_tokenizer,
                                                                                   batch_invariant):
    base = _tiny_llama(len(tiny_bpe_tokenizer))
    states = FrozenLayerStates(2)
    kwargs = {"batch_size": 2, "batch_invariant": batch_invariant}
    # The base model scores two sets (the demo's recent-K and SUBR prompts); both are recorded.
    other_set = [prompt.replace("stars", "points") for prompt in PROMPTS[:3]]
    zero_shot = CTRScorer(base, tiny_bpe_tokenizer, frozen_states=states, **kwargs).score(PROMPTS, progress=False)
    recorded = len(states.states)
    CTRScorer(base, tiny_bpe_tokenizer, frozen_states=states, **kwargs).score(other_set, progress=False)
    assert recorded and len(states.states) > recorded

    tuned = _perturbed(base, lambda layers: layers[2:])
    whole = CTRScorer(tuned, tiny_bpe_tokenizer, **kwargs).score(PROMPTS, progress=False)
    replayed_scorer = CTRScorer(tuned, tiny_bpe_tokenizer, frozen_states=states, **kwargs)
    calls = []
    hook = tuned.model.layers[0].mlp.register_forward_hook(lambda *args: calls.append(1))
    replayed = replayed_scorer.score(PROMPTS, progress=False)
    hook.remove()
    np.testing.assert_allclose(replayed_scorer.score(other_set, progress=False),
                               CTRScorer(tuned, tiny_bpe_tokenizer, **kwargs).score(other_set, progress=False),
                               rtol=0, atol=1e-6)
    assert np.abs(whole - zero_shot).max() > 1e-3  # the fine-tune changed the scores
    np.testing.assert_allclose(replayed, whole, rtol=0, atol=1e-6)
    # Bottom layers ran only for the shared prefix (once per window), never for a batch.
    from rella_hf.shared_prefix import shared_prefix_length

    shared = replayed_scorer.share_prefix and shared_prefix_length(replayed_scorer._encode(PROMPTS)) > 0
    assert len(calls) == (1 if shared else 0)
    # The layers' own forward is back in place afterwards.
    assert "forward" not in tuned.model.layers[0].__dict__


def test_a_model_whose_bottom_layers_differ_is_scored_whole(tiny_bpe_tokenizer):
    base = _tiny_llama(len(tiny_bpe_tokenizer))
    states = FrozenLayerStates(2)
    CTRScorer(base, tiny_bpe_tokenizer, frozen_states=states).score(PROMPTS, progress=False)
    other = _perturbed(base, lambda layers: layers[:1])
    assert bottom_layers_fingerprint(other, 2) != states.fingerprint
    assert states.mode_for(other) is None
    whole = CTRScorer(other, tiny_bpe_tokenizer).score(PROMPTS, progress=False)
    np.testing.assert_allclose(CTRScorer(other, tiny_bpe_tokenizer, frozen_states=states).score(PROMPTS, progress=False),
                               whole, rtol=0, atol=1e-6)
    assert states.mode_for(copy.deepcopy(base).to(torch.float64)) is None  # another dtype is another model
    # The recorder itself changed in place: what it recorded is dropped, it records afresh.
    with torch.no_grad():
        base.model.layers[0].mlp.up_proj.weight.mul_(2)
    assert states.mode_for(base) == "record" and not states.states and states.fingerprint == bottom_layers_fingerprint(base, 2)
