"""Tests of rella_hf.embeddings: item texts, pooling math, length sorting, the cache and PCA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rella_hf.embeddings import (
    MINILM_IDENTITY,
    HFEmbedder,
    ItemEmbedder,
    SentenceTransformerEmbedder,
    embed_items,
    get_embedder,
    item_texts,
    pca_reduce,
)
from rella_hf.errors import ConfigError, RellaError
from rella_hf.utils import atomic_save_npy, cache_root, fingerprint

TEXTS = [
    "Here is a movie. Its title is Heat (1995). The movie's genre is Action.",
    "Here is a movie.",
    "Here is a book. Its title is Dune. ISBN of the book is 0441172717.",
    "Toy Story",
    "Here is a movie. Its title is Schindler's List (1993). The movie's genre is Drama. And more words here.",
]


def make_tokenizer():
    """A real byte-level BPE tokenizer trained on the fixture texts (adds BOS like Llama's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=350, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(TEXTS * 3, trainer)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def make_llama(tokenizer, seed=0, causal_lm=True):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
    )
    model = (LlamaForCausalLM if causal_lm else LlamaModel)(config)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def llama(tokenizer):
    return make_llama(tokenizer)


def manual_states(model, tokenizer, text):
    """Last layer states of one text run alone (no padding), taken at the LM head's input."""
    import torch

    captured = {}
    hook = model.lm_head.register_forward_hook(lambda module, inputs, output: captured.update(states=inputs[0]))
    with torch.no_grad():
        model(**tokenizer(text, return_tensors="pt"))
    hook.remove()
    return captured["states"][0].float().numpy()


# ---------------------------------------------------------------------------------------------
# Item texts
# ---------------------------------------------------------------------------------------------


def test_movie_and_book_item_texts_match_the_paper():
    movies = pd.DataFrame({"item_id": [1, 2], "title": ["Heat (1995)", "Schindler's List (1993)"], "genre": ["Action", "Drama"]})
    assert item_texts(movies, "movie") == [
        "Here is a movie. Its title is Heat (1995). The movie's genre is Action.",
        "Here is a movie. Its title is Schindler's List (1993). The movie's genre is Drama.",
    ]
    books = pd.DataFrame({
        "title": ["Dune"], "isbn": ["0441172717"], "author": ["Frank Herbert"], "year": ["1965"], "publisher": ["Ace"],
    })
    assert item_texts(books, "book") == [
        "Here is a book. Its title is Dune. ISBN of the book is 0441172717. The author of the book is Frank Herbert. "
        "The publication year of the book is 1965. Its publisher is Ace."
    ]


def test_item_texts_print_values_as_written():
    books = pd.DataFrame({
        "title": ["A", "B"], "isbn": ["1", "2"], "author": ["X", None], "year": [1999.0, np.nan], "publisher": ["P", "Q"],
    }, index=[10, 20])
    texts = item_texts(books, "book")
    assert "The publication year of the book is 1999." in texts[0]
    assert "The author of the book is unknown." in texts[1] and "year of the book is unknown." in texts[1]


def test_item_texts_errors():
    with pytest.raises(ConfigError, match="genre"):
        item_texts(pd.DataFrame({"title": ["A"]}), "movie")
    with pytest.raises(ConfigError, match="domain"):
        item_texts(pd.DataFrame({"title": ["A"]}), "music")


# ---------------------------------------------------------------------------------------------
# Hugging Face pooling
# ---------------------------------------------------------------------------------------------


def test_average_pooling_is_masked_mean_of_lm_head_inputs(llama, tokenizer):
    embedder = HFEmbedder((llama, tokenizer), pooling="average")
    vectors = embedder.encode(TEXTS, batch_size=2, progress=False)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 64)
    for text, vector in zip(TEXTS, vectors):
        np.testing.assert_allclose(vector, manual_states(llama, tokenizer, text).mean(axis=0), rtol=1e-4, atol=1e-5)


def test_last_pooling_takes_the_last_real_token(llama, tokenizer):
    embedder = HFEmbedder((llama, tokenizer), pooling="last")
    vectors = embedder.encode(TEXTS, batch_size=3, progress=False)
    for text, vector in zip(TEXTS, vectors):
        np.testing.assert_allclose(vector, manual_states(llama, tokenizer, text)[-1], rtol=1e-4, atol=1e-5)


def test_length_sorting_and_batch_size_do_not_change_results(llama, tokenizer):
    embedder = HFEmbedder((llama, tokenizer), pooling="average")
    one_by_one = embedder.encode(TEXTS, batch_size=1, progress=False)
    all_at_once = embedder.encode(TEXTS, batch_size=len(TEXTS), progress=False)
    permutation = [3, 0, 4, 2, 1]
    shuffled = embedder.encode([TEXTS[i] for i in permutation], batch_size=2, progress=False)
    np.testing.assert_allclose(all_at_once, one_by_one, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(shuffled, one_by_one[permutation], rtol=1e-4, atol=1e-5)


def test_base_model_and_encoder_models_work(tokenizer):
    import torch
    from transformers import BertConfig, BertModel

    base = make_llama(tokenizer, causal_lm=False)
    vectors = HFEmbedder(base, tokenizer=tokenizer, pooling="average").encode(TEXTS[:2], progress=False)
    with torch.no_grad():
        alone = base(**tokenizer(TEXTS[1], return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(vectors[1], alone, rtol=1e-4, atol=1e-5)

    torch.manual_seed(0)
    bert = BertModel(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, pad_token_id=tokenizer.pad_token_id,
    )).eval()
    bert_vectors = HFEmbedder((bert, tokenizer), pooling="average").encode(TEXTS, batch_size=2, progress=False)
    with torch.no_grad():
        alone = bert(**tokenizer(TEXTS[0], return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(bert_vectors[0], alone, rtol=1e-4, atol=1e-5)


def test_identity_tracks_weights(tokenizer, llama):
    same = make_llama(tokenizer, seed=0)
    other = make_llama(tokenizer, seed=1)
    identity = HFEmbedder((llama, tokenizer)).identity
    assert HFEmbedder((same, tokenizer), pooling="last").identity == identity
    assert HFEmbedder((other, tokenizer)).identity != identity


def test_hf_route_loads_a_saved_folder(tmp_path, tokenizer, llama):
    llama.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    embedder = get_embedder(f"hf:{tmp_path / 'tiny'}", pooling="last", device="cpu")
    assert isinstance(embedder, HFEmbedder) and embedder.pooling == "last"
    expected = HFEmbedder((llama, tokenizer), pooling="last").encode(TEXTS, progress=False)
    np.testing.assert_allclose(embedder.encode(TEXTS, progress=False), expected, rtol=1e-4, atol=1e-5)
    # A folder without modules.json is a plain Hugging Face model too.
    assert isinstance(get_embedder(str(tmp_path / "tiny"), device="cpu"), HFEmbedder)


def test_hf_embedder_argument_errors(llama, tokenizer):
    with pytest.raises(ConfigError, match="pooling"):
        HFEmbedder((llama, tokenizer), pooling="max")
    with pytest.raises(ConfigError, match="tokenizer"):
        HFEmbedder(llama)
    with pytest.raises(ConfigError, match="no texts"):
        HFEmbedder((llama, tokenizer)).encode([])


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


class CountingEmbedder(ItemEmbedder):
    """Deterministic fake: hashes each text into a vector and counts encode calls."""

    def __init__(self, identity="fake", dim=8):
        self.identity = identity
        self.pooling = "average"
        self.dim = dim
        self.calls = 0

    def encode(self, texts, batch_size=32, progress=True):
        self.calls += 1
        seeds = [int(fingerprint(text)[:8], 16) for text in texts]
        return np.stack([np.random.default_rng(seed).normal(size=self.dim) for seed in seeds]).astype(np.float32)


def test_second_run_loads_the_cache_without_calling_the_embedder(tmp_path):
    embedder = CountingEmbedder()
    first = embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    assert embedder.calls == 1
    fresh = CountingEmbedder()  # a new process would build a new embedder object
    second = embed_items(TEXTS, fresh, cache_dir=tmp_path, progress=False)
    assert fresh.calls == 0
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    # Only finished files remain: no temporary leftovers from the atomic writes.
    assert sorted(path.suffix for path in tmp_path.iterdir()) == [".json", ".npy"]


def test_cache_key_changes_with_texts_identity_and_pooling(tmp_path):
    embedder = CountingEmbedder()
    embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    embed_items(TEXTS[::-1], embedder, cache_dir=tmp_path, progress=False)
    assert embedder.calls == 2
    other = CountingEmbedder(identity="another model")
    embed_items(TEXTS, other, cache_dir=tmp_path, progress=False)
    assert other.calls == 1
    last = CountingEmbedder()
    last.pooling = "last"
    embed_items(TEXTS, last, cache_dir=tmp_path, progress=False)
    assert last.calls == 1


def test_pca_results_are_cached_and_reuse_raw_embeddings(tmp_path):
    texts = [f"item {index}" for index in range(20)]
    embedder = CountingEmbedder(dim=16)
    reduced = embed_items(texts, embedder, pca_dim=4, cache_dir=tmp_path, progress=False)
    assert reduced.shape == (20, 4) and embedder.calls == 1
    again = embed_items(texts, embedder, pca_dim=4, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(reduced, again)
    other_dim = embed_items(texts, embedder, pca_dim=3, cache_dir=tmp_path, progress=False)
    assert other_dim.shape == (20, 3)
    raw = embed_items(texts, embedder, cache_dir=tmp_path, progress=False)
    assert raw.shape == (20, 16)
    assert embedder.calls == 1


def test_default_cache_dir_and_use_cache_false(tmp_path, monkeypatch):
    monkeypatch.setenv("RELLA_HF_CACHE", str(tmp_path / "root"))
    assert cache_root() == tmp_path / "root"
    embedder = CountingEmbedder()
    embed_items(TEXTS, embedder, progress=False)
    assert len(list((tmp_path / "root" / "embeddings").glob("*.npy"))) == 1
    embed_items(TEXTS, embedder, progress=False, use_cache=False)
    assert embedder.calls == 2


def test_unreadable_or_mismatched_cache_is_recomputed(tmp_path):
    embedder = CountingEmbedder()
    expected = embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    (cached,) = tmp_path.glob("*.npy")
    cached.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False), expected)
    atomic_save_npy(cached, np.zeros((2, 8), dtype=np.float32))  # wrong row count
    np.testing.assert_array_equal(embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False), expected)
    assert embedder.calls == 3


def test_real_model_cache_reuse(tmp_path, llama, tokenizer):
    embedder = HFEmbedder((llama, tokenizer), pooling="average")
    first = embed_items(TEXTS, embedder, cache_dir=tmp_path, progress=False)
    reloaded = HFEmbedder((llama, tokenizer), pooling="average")

    def forbidden(*args, **kwargs):
        raise AssertionError("encode must not run when the cache holds the embeddings")

    reloaded.encode = forbidden
    np.testing.assert_array_equal(embed_items(TEXTS, reloaded, cache_dir=tmp_path, progress=False), first)


# ---------------------------------------------------------------------------------------------
# PCA
# ---------------------------------------------------------------------------------------------


def test_pca_shape_determinism_and_decorrelation():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 32)) @ rng.normal(size=(32, 32))).astype(np.float32)
    first = pca_reduce(x, 8, seed=3)
    second = pca_reduce(x, 8, seed=3)
    assert first.shape == (200, 8) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    covariance = np.cov(first.astype(np.float64), rowvar=False)
    variances = np.diag(covariance)
    assert np.all(np.diff(variances) <= 1e-6 * variances[0])  # components by decreasing variance
    off_diagonal = covariance - np.diag(variances)
    assert np.abs(off_diagonal).max() < 1e-3 * variances[0]
    # The projections keep the top singular values of the centred data.
    singular = np.linalg.svd(x - x.mean(0), compute_uv=False)[:8]
    np.testing.assert_allclose(np.linalg.norm(first, axis=0), singular, rtol=1e-3)


def test_pca_edge_cases():
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    np.testing.assert_array_equal(pca_reduce(x, 6), x)  # nothing to reduce
    np.testing.assert_array_equal(pca_reduce(x, 512), x)
    wide = np.random.default_rng(0).normal(size=(5, 40)).astype(np.float32)
    with pytest.raises(ConfigError, match="pca_dim=8"):
        pca_reduce(wide, 8)
    with pytest.raises(RellaError):
        pca_reduce(x, 0)


# ---------------------------------------------------------------------------------------------
# Real sentence-transformers model (offline package)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_minilm_default_embeds_offline(tmp_path):
    embedder = get_embedder("minilm", device="cpu")
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.identity == MINILM_IDENTITY
    vectors = embed_items(TEXTS[:3], embedder, cache_dir=tmp_path, progress=False)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    # all-MiniLM-L6-v2 ends with a Normalize module, and the wrapper returns its vectors as they are.
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    direct = embedder.model.encode(TEXTS[:3], convert_to_numpy=True)
    np.testing.assert_allclose(vectors, direct, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_is_close_and_cached_apart(tmp_path, llama, tokenizer):
    exact = HFEmbedder((llama, tokenizer), pooling="average")
    fast = HFEmbedder((llama, tokenizer), pooling="average", compute_dtype="bfloat16")
    assert fast.identity == exact.identity + "|compute=bfloat16"
    a, b = exact.encode(TEXTS, progress=False), fast.encode(TEXTS, progress=False)
    assert b.dtype == np.float32 and b.shape == a.shape
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99
    with pytest.raises(ConfigError, match="compute_dtype='half'"):
        HFEmbedder((llama, tokenizer), compute_dtype="half")
    assert HFEmbedder((llama, tokenizer), compute_dtype="auto").compute_dtype in ("float32", "bfloat16")


def test_minilm_bf16_name_keeps_the_float32_cache_apart():
    embedder = get_embedder("minilm-bf16", device="cpu")
    assert embedder.compute_dtype == "bfloat16" and embedder.identity == MINILM_IDENTITY + "|compute=bfloat16"
    assert get_embedder("minilm", device="cpu").identity == MINILM_IDENTITY


@pytest.mark.parametrize("device, bf16, expected", [
    (None, True, ("bfloat16", "auto")),          # every GPU, 16-bit: a 13B model is not 52 GB on one card
    (None, False, ("float16", "auto")),
    ("cuda:1", True, ("bfloat16", {"": "cuda:1"})),
    ("cpu", True, ("float32", {"": "cpu"})),     # CPU: float32 keeps SUBR selections
])
def test_llm_embedders_load_in_16_bits_sharded_on_gpus(monkeypatch, device, bf16, expected):
    import torch

    from rella_hf.embeddings import llm_load_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    settings = llm_load_settings(device)
    assert (str(settings["dtype"]).removeprefix("torch."), settings["device_map"]) == expected


def test_hf_route_by_name_passes_the_load_settings_and_never_moves_the_model(tmp_path, monkeypatch, tokenizer, llama):
    import torch
    from transformers import AutoModel

    llama.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    seen = {}
    original = AutoModel.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        seen.update(kwargs)
        return original(cls, path, dtype=torch.float32)  # this CPU test host has no GPU to map onto

    monkeypatch.setattr(AutoModel, "from_pretrained", classmethod(spy))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    moves = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda module, *args, **kwargs: moves.append(args) or module)
    embedder = HFEmbedder(str(tmp_path / "tiny"))
    assert seen == {"dtype": torch.bfloat16, "device_map": "auto"} and moves == []
    assert embedder.encode(TEXTS[:2], progress=False).shape == (2, 64)
