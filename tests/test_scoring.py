"""Tests of rella_hf.scoring: yes/no ids, fast path == full-logits reference, datasets, processes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rella_hf.errors import ConfigError, ModelError
from rella_hf.prompts import wrap_prompts
from rella_hf.scoring import CTRScorer, answer_token_ids, encode_prompts, score_dataset
from rella_hf.scoring_reference import naive_scores

RAW_PROMPTS = [
    "The user watched Toy Story (1995) and rated it 5 stars. Will the user like Heat (1995)? Answer with Yes or No.",
    "Will the user like Casino (1995)?",
    "Given the user's history Alien (1979), Fargo (1996), Sabrina (1995), Grumpier Old Men (1995), Jumanji "
    "(1995) and Waiting to Exhale (1995), should we recommend Heat (1995)? Answer with Yes or No.",
    "The user rated Jumanji (1995) 2 stars. Will the user like Toy Story (1995)?",
    "Should we recommend Fargo (1996)? Answer with Yes or No.",
    "The user watched the following movies and rated them: Heat (1995) 4 stars, Casino (1995) 5 stars, Alien "
    "(1979) 3 stars. Based on these ratings, will the user like Sabrina (1995)? Answer with Yes or No.",
    "Will the user like Alien (1979)? Answer with Yes or No.",
]

TOKENIZERS = ["tiny_bpe_tokenizer", pytest.param("smollm2_tokenizer", marks=pytest.mark.slow)]


def tiny_llama(tokenizer, seed: int = 0):
    """A random 2-layer Llama over the tokenizer's vocabulary, float32, eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(params=TOKENIZERS)
def tokenizer(request):
    return request.getfixturevalue(request.param)


def wrapped(tokenizer, raw=RAW_PROMPTS):
    return wrap_prompts(list(raw), tokenizer)


def reference_from_ids(model, ids, yes_ids, no_ids) -> float:
    """Full-softmax P(yes)/(P(yes)+P(no)) after one unpadded token sequence."""
    with torch.no_grad():
        probabilities = model(input_ids=torch.tensor([ids])).logits[0, -1].float().softmax(-1)
    p_yes, p_no = probabilities[yes_ids].sum().item(), probabilities[no_ids].sum().item()
    return p_yes / (p_yes + p_no)


# ---------------------------------------------------------------------------------------------
# Yes / no token ids
# ---------------------------------------------------------------------------------------------


def test_answer_ids_for_the_sentencepiece_style_bpe(tiny_bpe_tokenizer):
    prompt = wrapped(tiny_bpe_tokenizer)[0]
    assert prompt.endswith("ASSISTANT:")  # Vicuna wrapper: the answer follows after a space
    yes_ids, no_ids = answer_token_ids(tiny_bpe_tokenizer, prompt)
    # Canonical ids: the first tokens of " Yes." / " No." right after the prompt.
    full_yes = tiny_bpe_tokenizer(prompt + " Yes.", add_special_tokens=False)["input_ids"]
    prompt_ids = tiny_bpe_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert yes_ids[0] == full_yes[len(prompt_ids)]
    assert tiny_bpe_tokenizer.convert_ids_to_tokens(yes_ids[0]) == "▁Yes."
    assert tiny_bpe_tokenizer.convert_ids_to_tokens(no_ids[0]) == "▁No."
    _check_variants(tiny_bpe_tokenizer, yes_ids, no_ids)
    # Case variants the tokenizer has as whole tokens are summed too.
    assert {"▁yes", "▁YES"} <= set(tiny_bpe_tokenizer.convert_ids_to_tokens(yes_ids))


@pytest.mark.slow
def test_answer_ids_for_smollm2(smollm2_tokenizer):
    prompt = wrapped(smollm2_tokenizer)[0]
    assert prompt.endswith("<|im_start|>assistant\n")  # chat template: the answer follows directly
    yes_ids, no_ids = answer_token_ids(smollm2_tokenizer, prompt)
    assert smollm2_tokenizer.convert_ids_to_tokens(yes_ids[0]) == "Yes"
    assert smollm2_tokenizer.convert_ids_to_tokens(no_ids[0]) == "No"
    _check_variants(smollm2_tokenizer, yes_ids, no_ids)
    tokens = set(smollm2_tokenizer.convert_ids_to_tokens(yes_ids))
    assert {"Yes", "yes", "ĠYes"} <= tokens and "Y" not in tokens  # "Y" of "YES" also starts "You"


def _check_variants(tokenizer, yes_ids, no_ids):
    assert len(set(yes_ids)) == len(yes_ids) and len(set(no_ids)) == len(no_ids)
    assert not set(yes_ids) & set(no_ids)
    for token_id in yes_ids[1:]:
        assert tokenizer.decode([token_id]).strip().lower().rstrip(".") == "yes"
    for token_id in no_ids[1:]:
        assert tokenizer.decode([token_id]).strip().lower().rstrip(".") == "no"


def test_tokenizer_starting_both_answers_with_one_token_is_rejected():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # Character-level: " Yes." and " No." both start with the space token.
    characters = sorted(set("".join(RAW_PROMPTS) + "ASISTNTUER: Yes. No. yes no YES NO"))
    backend = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["<unk>"] + characters)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ModelError, match="does not tell yes from no"):
        answer_token_ids(tokenizer, "USER: Will the user like Heat (1995)? ASSISTANT:")


# ---------------------------------------------------------------------------------------------
# Fast path against the full-logits reference
# ---------------------------------------------------------------------------------------------


def test_fast_path_equals_full_logits_reference(tokenizer):
    model = tiny_llama(tokenizer)
    prompts = wrapped(tokenizer)
    lengths = {len(ids) for ids in encode_prompts(tokenizer, prompts)}
    assert len(lengths) > 3  # the batch really needs padding
    fast = CTRScorer(model, tokenizer, batch_size=4).score(prompts, progress=False)
    naive = naive_scores(model, tokenizer, prompts)  # one prompt at a time, no padding
    assert fast.dtype == np.float64 and fast.shape == (len(prompts),)
    np.testing.assert_allclose(fast, naive, atol=1e-5, rtol=0)
    assert np.ptp(fast) > 1e-4  # a random model still separates prompts
    # The naive path in batches (right padding, as Trainer.evaluate) gives the same numbers.
    np.testing.assert_allclose(naive_scores(model, tokenizer, prompts, batch_size=3), naive, atol=1e-5, rtol=0)


def test_left_padding_keeps_absolute_positions_right(tiny_bpe_tokenizer):
    """GPT-2 adds learned absolute position embeddings: a left-padded row must still start at 0."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=len(tiny_bpe_tokenizer), n_positions=256)
    model = GPT2LMHeadModel(config).eval()
    prompts = wrapped(tiny_bpe_tokenizer)
    fast = CTRScorer(model, tiny_bpe_tokenizer, batch_size=8).score(prompts, progress=False)
    np.testing.assert_allclose(fast, naive_scores(model, tiny_bpe_tokenizer, prompts), atol=1e-5, rtol=0)


def test_padding_side_batch_size_and_order_do_not_change_scores(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer, seed=1)
    prompts = wrapped(tiny_bpe_tokenizer)
    reference = CTRScorer(model, tiny_bpe_tokenizer, batch_size=1).score(prompts, progress=False)

    right = copy.deepcopy(tiny_bpe_tokenizer)
    right.padding_side = "right"
    np.testing.assert_allclose(CTRScorer(model, right, batch_size=8).score(prompts, progress=False),
                               reference, atol=1e-5, rtol=0)

    order = np.random.default_rng(0).permutation(len(prompts))
    for batch_size, sort_window in [(3, None), (2, 3), (8, 2)]:
        scorer = CTRScorer(model, tiny_bpe_tokenizer, batch_size=batch_size, sort_window=sort_window)
        shuffled = scorer.score([prompts[i] for i in order], progress=False)
        np.testing.assert_allclose(shuffled, reference[order], atol=1e-5, rtol=0)


def test_fast_path_never_computes_the_full_vocabulary_head(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer)
    head_calls = []
    model.lm_head.register_forward_hook(lambda module, args, output: head_calls.append(tuple(output.shape)))
    prompts = wrapped(tiny_bpe_tokenizer) * 3
    scores = CTRScorer(model, tiny_bpe_tokenizer, batch_size=4, sort_window=8).score(prompts, progress=False)
    assert head_calls == []  # only the yes/no rows of the head are used, in float32
    np.testing.assert_allclose(scores, naive_scores(model, tiny_bpe_tokenizer, prompts), atol=1e-5, rtol=0)


def test_scaled_heads_take_the_general_route_with_last_position_logits(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer)
    model.config.logit_scale = 2.0  # a head that scales its logits cannot be reduced to lm_head rows
    shapes = []
    model.register_forward_hook(lambda module, args, output: shapes.append(tuple(output.logits.shape)))
    prompts = wrapped(tiny_bpe_tokenizer) * 3
    scorer = CTRScorer(model, tiny_bpe_tokenizer, batch_size=4, sort_window=8)
    assert scorer._answer_head is None
    scorer.score(prompts, progress=False)
    assert len(shapes) == 6  # windows of 8, 8, 5 prompts -> 2 + 2 + 2 batches
    assert all(shape[1] == 1 and shape[2] == len(tiny_bpe_tokenizer) for shape in shapes)


def _scores_in_random_orders(model, tokenizer, prompts, batch_sizes, **kwargs) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    by_batch = {}
    for batch_size in batch_sizes:
        order = rng.permutation(len(prompts))
        scores = CTRScorer(model, tokenizer, batch_size=batch_size, **kwargs).score(
            [prompts[i] for i in order], progress=False)
        by_batch[batch_size] = np.empty(len(prompts))
        by_batch[batch_size][order] = scores
    return by_batch


def test_bf16_scores_do_not_depend_on_batch_mates(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer).to(torch.bfloat16)
    prompts = (wrapped(tiny_bpe_tokenizer) * 5)[:32]
    scorer = CTRScorer(model, tiny_bpe_tokenizer)
    assert scorer.batch_invariant  # a 16-bit model on the CPU runs each prompt alone by default
    by_batch = _scores_in_random_orders(model, tiny_bpe_tokenizer, prompts, (1, 8, 32))
    for batch_size in (8, 32):
        assert np.abs(by_batch[batch_size] - by_batch[1]).max() <= 1e-3
    float32 = tiny_llama(tiny_bpe_tokenizer)
    assert not CTRScorer(float32, tiny_bpe_tokenizer).batch_invariant  # float32 batches (tested above)


@pytest.mark.slow
def test_real_smollm2_bf16_scores_do_not_depend_on_batch_mates(smollm2_dir, smollm2_tokenizer):
    """The issue's check: the same 32 real prompts at batch 1, 8 and 32, in random orders, within 1e-3."""
    from rella_hf.models import load_model

    model, _ = load_model(str(smollm2_dir), dtype="bfloat16")
    raw = [f"The user rated {title} {stars} stars. Will the user like Heat (1995)? Answer with Yes or No."
           for title in ("Toy Story (1995)", "Jumanji (1995)", "Casino (1995)", "Fargo (1996)")
           for stars in range(1, 6)]
    raw += [prompt.replace("Heat (1995)", "Alien (1979)") for prompt in raw[:12]]
    prompts = wrap_prompts(raw, smollm2_tokenizer)
    assert len(prompts) == 32
    by_batch = _scores_in_random_orders(model, smollm2_tokenizer, prompts, (1, 8, 32))
    for batch_size in (8, 32):
        assert np.abs(by_batch[batch_size] - by_batch[1]).max() <= 1e-3


def test_training_mode_is_restored(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer).train()
    CTRScorer(model, tiny_bpe_tokenizer).score(wrapped(tiny_bpe_tokenizer)[:2], progress=False)
    assert model.training


def test_max_length_cuts_the_beginning_and_keeps_bos(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer)
    prompts = wrapped(tiny_bpe_tokenizer)
    full = encode_prompts(tiny_bpe_tokenizer, prompts)
    limit = sorted(len(ids) for ids in full)[len(full) // 2]
    scorer = CTRScorer(model, tiny_bpe_tokenizer, batch_size=3, max_length=limit)
    scores = scorer.score(prompts, progress=False)
    yes_ids, no_ids = answer_token_ids(tiny_bpe_tokenizer, prompts[0])
    bos = tiny_bpe_tokenizer.bos_token_id
    for ids, score in zip(full, scores):
        assert ids[0] == bos
        kept = ids if len(ids) <= limit else [bos] + ids[-(limit - 1):]
        assert len(kept) <= limit
        assert score == pytest.approx(reference_from_ids(model, kept, yes_ids, no_ids), abs=1e-5)


def test_peft_wrapped_model_scores_like_its_merged_weights(tiny_bpe_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = tiny_llama(tiny_bpe_tokenizer)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    prompts = wrapped(tiny_bpe_tokenizer)
    fast = CTRScorer(peft_model, tiny_bpe_tokenizer, batch_size=4).score(prompts, progress=False)
    np.testing.assert_allclose(fast, naive_scores(peft_model, tiny_bpe_tokenizer, prompts), atol=1e-5, rtol=0)


def test_given_ids_are_used_and_must_come_in_pairs(tiny_bpe_tokenizer):
    model = tiny_llama(tiny_bpe_tokenizer)
    prompts = wrapped(tiny_bpe_tokenizer)[:3]
    yes_ids, no_ids = answer_token_ids(tiny_bpe_tokenizer, prompts[0])
    only_canonical = CTRScorer(model, tiny_bpe_tokenizer, yes_ids=yes_ids[:1], no_ids=no_ids[:1])
    expected = naive_scores(model, tiny_bpe_tokenizer, prompts, yes_ids=yes_ids[:1], no_ids=no_ids[:1])
    np.testing.assert_allclose(only_canonical.score(prompts, progress=False), expected, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="together"):
        CTRScorer(model, tiny_bpe_tokenizer, yes_ids=yes_ids)
    with pytest.raises(ConfigError, match="batch_size=0"):
        CTRScorer(model, tiny_bpe_tokenizer, batch_size=0)
    assert CTRScorer(model, tiny_bpe_tokenizer).score([], progress=False).shape == (0,)


# ---------------------------------------------------------------------------------------------
# Whole dataset splits
# ---------------------------------------------------------------------------------------------


def _split(tokenizer, repeats: int = 2):
    import datasets

    prompts = wrapped(tokenizer) * repeats
    return datasets.Dataset.from_dict({
        "sample_id": list(range(len(prompts))),
        "prompt": prompts,
        "label": [i % 2 for i in range(len(prompts))],
    })


class InterruptingScorer(CTRScorer):
    """Fails on the n-th chunk, like a run killed halfway."""

    def __init__(self, *args, fail_on_call: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.fail_on_call = fail_on_call

    def _score(self, prompts, bar):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        return super()._score(prompts, bar)


def test_score_dataset_adds_scores_next_to_labels(tiny_bpe_tokenizer, tmp_path):
    import pandas as pd

    model = tiny_llama(tiny_bpe_tokenizer)
    split = _split(tiny_bpe_tokenizer)
    scorer = CTRScorer(model, tiny_bpe_tokenizer, batch_size=4)
    scored = score_dataset(scorer, split, output_dir=tmp_path / "run", shard_size=5, progress=False)
    expected = scorer.score(split["prompt"], progress=False)
    assert scored.column_names == split.column_names + ["score"]
    np.testing.assert_allclose(np.asarray(scored["score"]), expected, atol=1e-5, rtol=0)
    table = pd.read_parquet(tmp_path / "run" / "scores.parquet")
    assert list(table.columns) == ["sample_id", "label", "score"]
    assert table["label"].tolist() == split["label"][:]
    np.testing.assert_allclose(table["score"].to_numpy(), expected, atol=1e-5, rtol=0)
    # Without output_dir nothing is written and the result is the same.
    in_memory = score_dataset(scorer, split, progress=False)
    np.testing.assert_allclose(np.asarray(in_memory["score"]), expected, atol=1e-5, rtol=0)


def test_a_calibrated_scorer_adds_score_calibrated_beside_the_unchanged_raw_score(tiny_bpe_tokenizer, tmp_path):
    import pandas as pd

    from rella_hf.calibration import Calibration

    model = tiny_llama(tiny_bpe_tokenizer)
    split = _split(tiny_bpe_tokenizer)
    raw = score_dataset(CTRScorer(model, tiny_bpe_tokenizer, batch_size=4), split, progress=False)
    calibration = Calibration(method="platt", parameters={"a": 2.0, "b": -0.5}, n=100, positive_rate=0.5,
                              fingerprint="name:tiny")
    scorer = CTRScorer(model, tiny_bpe_tokenizer, batch_size=4, calibration=calibration)
    scored = score_dataset(scorer, split, output_dir=tmp_path / "run", progress=False)
    assert scored.column_names == split.column_names + ["score", "score_calibrated"]
    assert scored["score"] == raw["score"]  # byte for byte the paper's score
    np.testing.assert_array_equal(scored["score_calibrated"], calibration.transform(np.asarray(raw["score"])))
    assert np.asarray(scorer.score(split["prompt"], progress=False)).tolist() == raw["score"]
    table = pd.read_parquet(tmp_path / "run" / "scores.parquet")
    assert list(table.columns) == ["sample_id", "label", "score", "score_calibrated"]
    assert CTRScorer(model, tiny_bpe_tokenizer).calibrate([0.5]) is None


def test_score_dataset_resumes_after_an_interruption(tiny_bpe_tokenizer, tmp_path):
    model = tiny_llama(tiny_bpe_tokenizer)
    split = _split(tiny_bpe_tokenizer)  # 14 rows -> shards of 4: 4 + 4 + 4 + 2
    first = InterruptingScorer(model, tiny_bpe_tokenizer, batch_size=3, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        score_dataset(first, split, output_dir=tmp_path / "run", shard_size=4, progress=False)
    saved = sorted(p.name for p in (tmp_path / "run").glob("scores-*.npz"))
    assert saved == ["scores-00000.npz", "scores-00001.npz"]  # finished shards survive
    assert not list((tmp_path / "run").glob(".*"))  # no half-written temp files

    second = InterruptingScorer(model, tiny_bpe_tokenizer, batch_size=3)
    resumed = score_dataset(second, split, output_dir=tmp_path / "run", shard_size=4, progress=False)
    assert second.calls == 2  # only the two missing shards were scored
    fresh = CTRScorer(model, tiny_bpe_tokenizer, batch_size=3).score(split["prompt"], progress=False)
    np.testing.assert_allclose(np.asarray(resumed["score"]), fresh, atol=1e-5, rtol=0)


def test_score_dataset_refuses_to_mix_different_data(tiny_bpe_tokenizer, tmp_path):
    model = tiny_llama(tiny_bpe_tokenizer)
    scorer = CTRScorer(model, tiny_bpe_tokenizer, batch_size=4)
    split = _split(tiny_bpe_tokenizer)
    score_dataset(scorer, split, output_dir=tmp_path / "run", shard_size=4, progress=False)
    reordered = split.select(list(reversed(range(len(split)))))
    with pytest.raises(ConfigError, match="different prompts"):
        score_dataset(scorer, reordered, output_dir=tmp_path / "run", shard_size=4, progress=False)
    with pytest.raises(ConfigError, match="new output_dir"):
        score_dataset(scorer, split, output_dir=tmp_path / "run", shard_size=5, progress=False)
    with pytest.raises(ConfigError, match="prompt_column='text'"):
        score_dataset(scorer, split, prompt_column="text", progress=False)


# ---------------------------------------------------------------------------------------------
# Several processes (accelerate launch)
# ---------------------------------------------------------------------------------------------

_LAUNCHED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import datasets
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from rella_hf.scoring import CTRScorer, score_dataset

    folder, out = sys.argv[1], sys.argv[2]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = json.load(open(f"{folder}/prompts.json"))
    scorer = CTRScorer(model, tokenizer, batch_size=2)
    scores = scorer.score(prompts, progress=False)
    split = datasets.Dataset.from_dict({"prompt": prompts, "label": [i % 2 for i in range(len(prompts))]})
    scored = score_dataset(scorer, split, output_dir=f"{out}/run", shard_size=4, progress=False)
    from accelerate import PartialState
    state = PartialState()
    assert state.num_processes == 2, state
    np.save(f"{out}/scores-rank{state.process_index}.npy", scores)
    np.save(f"{out}/dataset-rank{state.process_index}.npy", np.asarray(scored["score"]))
    state.destroy_process_group()
    """
)


@pytest.mark.slow
def test_accelerate_launch_splits_prompts_and_gathers_in_order(tiny_bpe_tokenizer, tmp_path):
    model = tiny_llama(tiny_bpe_tokenizer)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tiny_bpe_tokenizer.save_pretrained(folder)
    prompts = wrapped(tiny_bpe_tokenizer) + wrapped(tiny_bpe_tokenizer)[:2]  # 9: uneven split
    (folder / "prompts.json").write_text(json.dumps(prompts))
    script = tmp_path / "score.py"
    script.write_text(_LAUNCHED_SCRIPT)
    # Two CPU processes over gloo (torchrun via accelerate), whatever GPUs the machine has.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no",
               "--dynamo_backend", "no", str(script), str(folder), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    expected = CTRScorer(model, tiny_bpe_tokenizer, batch_size=2).score(prompts, progress=False)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"scores-rank{rank}.npy"), expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.load(tmp_path / f"dataset-rank{rank}.npy"), expected, atol=1e-5, rtol=0)
    assert len(list((tmp_path / "run").glob("scores-*.npz"))) == 3


# ---------------------------------------------------------------------------------------------
# The real SmolLM2 on ml-latest-small prompts
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_smollm2_scores_ml_latest_small_prompts(smollm2_cache_root, smollm2_dir):
    import rella_hf
    from rella_hf.metrics import ctr_metrics
    from rella_hf.models import load_model

    model, tokenizer = load_model(cache_dir=smollm2_cache_root)  # offline route, hardware dtype
    test = rella_hf.load_dataset("ml-latest-small", K=10, retrieval="recent", split="test",
                                 chat_model=str(smollm2_dir))
    sample = test.shuffle(seed=0).select(range(16))
    assert sample[0]["prompt"].endswith("<|im_start|>assistant\n")
    scored = score_dataset(CTRScorer(model, tokenizer, batch_size=8), sample, progress=False)
    scores = np.asarray(scored["score"])
    assert scores.shape == (16,) and np.isfinite(scores).all()
    assert ((scores > 0) & (scores < 1)).all() and np.ptp(scores) > 1e-3
    # In float32 the fast path equals the full-logits reference; the hardware dtype (bf16 on CPUs
    # with native bf16) only adds rounding noise of a few hundredths on this small model.
    model32, _ = load_model(cache_dir=smollm2_cache_root, dtype="float32")
    head = sample["prompt"][:2]
    fast32 = CTRScorer(model32, tokenizer, batch_size=2).score(head, progress=False)
    np.testing.assert_allclose(fast32, naive_scores(model32, tokenizer, head), atol=1e-4, rtol=0)
    np.testing.assert_allclose(scores[:2], fast32, atol=1e-4 if model.dtype == torch.float32 else 6e-2, rtol=0)
    labels = sample["label"][:]
    if 0 < sum(labels) < len(labels):
        metrics = ctr_metrics(labels, scores)
        assert 0 <= metrics["auc"] <= 1 and metrics["n"] == 16
