"""ReLLa prompt templates, history formats, chat wrapping, token budgets and the answer completions.

The wording of every template is ReLLa's (arXiv 2308.11131 and its released code) character for
character: it is the evaluation protocol, and published adapters were trained on exactly it.

A prompt is built in three steps:

1. :func:`render_prompts` fills a domain template (``"ml-1m"``, ``"ml-latest"`` or
   ``"book-crossing"``) with the user profile, the shown history and the target title. The history
   is ``"{i}. {title} ({rating} stars)"`` items (``i`` from 0, ``"star"`` when the rating is 1 or
   less), either as the paper's Python list repr (``history_format="list"``) or one item per line
   (``"lines"``).
2. :func:`wrap_prompt` puts the raw prompt into the model's chat template, or into Vicuna v1.1 when
   the tokenizer has none.
3. :func:`answer_completion` gives the completion ("Yes." / "No.") that follows the wrapped prompt.

:func:`rella_hf.prompt_budget.fit_prompt_budget` / ``fit_prompt_budgets`` drop history items (in a drop order the
caller chooses: least relevant or oldest first) until the wrapped prompt fits a token budget; the
profile, the question and the answer are never truncated.

Ratings are printed in the corpus's own convention, ``rating_format``:

- ``"int"``: integer ratings as the files write them, ``4`` (ML-1M, ML-100K, Book-Crossing 0-10);
  a non-integral rating is an error.
- ``"float1"``: one decimal as the ml-latest CSV files write them, ``4.0``, ``3.5``, ``0.5``.

``item_texts`` / ``ITEM_TEXT_TEMPLATES`` (the item descriptions that are embedded) live in
:mod:`rella_hf.embeddings` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from .embeddings import ITEM_TEXT_TEMPLATES, item_texts
from .errors import ConfigError
from .own_data_text import GENERIC_TEMPLATES, generic_template, prompt_template_for

__all__ = [
    "YES_ANSWER",
    "NO_ANSWER",
    "VICUNA_SYSTEM",
    "PROMPT_TEMPLATES",
    "PROFILE_FIELDS",
    "RATING_FORMATS",
    "HISTORY_FORMATS",
    "ITEM_TEXT_TEMPLATES",
    "GENERIC_TEMPLATES",
    "generic_template",
    "prompt_template_for",
    "item_texts",
    "answer_completion",
    "format_rating",
    "history_item_text",
    "format_history",
    "render_prompt",
    "render_prompts",
    "render_prompts_flat",
    "format_histories",
    "has_chat_template",
    "wrap_prompt",
    "wrap_prompts",
    "special_prefix_ids",
    "prompt_token_counts",
]

YES_ANSWER = "Yes."
NO_ANSWER = "No."

#: Vicuna v1.1's system line; the wrapped prompt is ``f"{VICUNA_SYSTEM} USER: {prompt} ASSISTANT:"``.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

#: The paper's prompt per domain template. ``{history}`` is the formatted history; ML-1M's
#: ``{Possessive}``, ``{Subject}`` and ``{subject}`` are the pronouns of the user's gender.
PROMPT_TEMPLATES: dict[str, str] = {
    "ml-1m": (
        "The user is a {gender}. {Possessive} job is {job}. {Possessive} age is {age}.\n"
        "{Subject} watched the following movies in order in the past, and rated them:\n"
        "{history}\n"
        "Based on the movies {subject} has watched, deduce if {subject} will like the movie ***{title}***.\n"
        "Note that more stars the user rated the movie, the user liked the movie more.\n"
        "You should ONLY tell me yes or no."
    ),
    "ml-latest": (
        "The user watched the following movies in the past, and rated them:\n"
        "{history}\n"
        "Based on the movies the user has watched, deduce if the user will like the movie ***{title}***.\n"
        "Note that more stars the user rated the movie, the user liked the movie more.\n"
        "You should ONLY tell me yes or no."
    ),
    "book-crossing": (
        "The user's location is {location}. The user's age is {age}.\n"
        "The user read the following books in the past and rated them:\n"
        "{history}\n"
        "Based on the books the user has read, deduce if the user will like the book ***{title}***.\n"
        "Note that more stars the user rated the book, the user liked the book more.\n"
        "You should ONLY tell me yes or no."
    ),
}

#: Profile columns each template needs (``render_prompts``'s ``profiles`` keys).
PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "ml-1m": ("gender", "job", "age"),
    "ml-latest": (),
    "book-crossing": ("location", "age"),
}

# Corpora whose prompt is another corpus's template (ML-100K has ML-1M's profile fields).
_TEMPLATE_ALIASES = {"ml-100k": "ml-1m", "ml-25m": "ml-latest", "ml-latest-small": "ml-latest"}

# gender -> (Possessive, Subject, subject)
_PRONOUNS = {"male": ("His", "He", "he"), "female": ("Her", "She", "she")}

RATING_FORMATS = ("int", "float1", "liked")
HISTORY_FORMATS = ("list", "lines")


def answer_completion(wrapped_prompt: str, positive: bool) -> str:
    """Return the completion text that follows ``wrapped_prompt`` for a positive or negative label.

    Chat templates end the prompt with a newline after the assistant header, so the answer follows
    directly; the Vicuna wrapper ends with ``"ASSISTANT:"`` and the answer needs a separating space.
    Scoring reads the first token of exactly this string, so training and scoring agree.

    Args:
        wrapped_prompt: the prompt as the model sees it (chat-wrapped).
        positive: True for "Yes.", False for "No.".
    """
    answer = YES_ANSWER if positive else NO_ANSWER
    if wrapped_prompt and not wrapped_prompt[-1].isspace():
        return " " + answer
    return answer


# --------------------------------------------------------------------------------------------
# History formatting
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}")


def format_rating(rating: float | int, rating_format: str) -> str:
    """Print one rating in the corpus's convention.

    Args:
        rating: the rating value (int, float or numpy scalar).
        rating_format: ``"int"`` (``4``; ML-1M, ML-100K, Book-Crossing) or ``"float1"`` (``4.0``,
            ``3.5``; the ml-latest family).
    """
    if rating_format == "int":
        value = float(rating)
        if not value.is_integer():
            raise ConfigError(
                f"rating {rating!r} is not an integer but rating_format='int'; use rating_format='float1' "
                "for half-star corpora such as ml-latest"
            )
        return str(int(value))
    if rating_format == "float1":
        return f"{float(rating):.1f}"
    if rating_format == "liked":
        return "liked" if float(rating) > 0 else "not liked"
    _check_choice("rating_format", rating_format, RATING_FORMATS)
    raise AssertionError("unreachable")


def rating_suffix(rating: float | int, rating_format: str) -> str:
    """What follows a history item's title: ``" (4 stars)"`` (``"star"`` at 1 or less), or for a binary
    label (``rating_format="liked"``) ``" (liked)"`` / ``" (not liked)"``."""
    if rating_format == "liked":
        return f" ({format_rating(rating, rating_format)})"
    unit = "star" if float(rating) <= 1 else "stars"
    return f" ({format_rating(rating, rating_format)} {unit})"


def history_item_text(title: str, rating: float | int, rating_format: str) -> str:
    """Return one history item without its index: ``"{title} ({rating} stars)"``.

    ``"star"`` replaces ``"stars"`` when the rating is 1 or less (so ``"1 star"``, ``"0 star"``,
    ``"0.5 star"``), as in ReLLa's code.

    Args:
        title: the item title.
        rating: the user's rating of it.
        rating_format: see :func:`format_rating`.
    """
    return f"{title}{rating_suffix(rating, rating_format)}"


def format_history(items: Sequence[str], history_format: str = "list") -> str:
    """Number history items from 0 and join them.

    Args:
        items: item texts from :func:`history_item_text`, in the order they are shown.
        history_format: ``"list"``, the paper's Python list repr
            (``['0. Heat (5 stars)', "1. Schindler's List (4 stars)"]``, quotes chosen by ``repr``),
            or ``"lines"``, the same numbered items one per line.
    """
    numbered = [f"{index}. {item}" for index, item in enumerate(items)]
    if history_format == "list":
        return str(numbered)
    if history_format == "lines":
        return "\n".join(numbered)
    _check_choice("history_format", history_format, HISTORY_FORMATS)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _resolve_template(domain_template: str) -> str:
    if "{history}" in domain_template:  # a template text (:func:`generic_template`), not a name
        return domain_template
    key = _TEMPLATE_ALIASES.get(domain_template, domain_template)
    _check_choice("domain_template", key, tuple(PROMPT_TEMPLATES))
    return key


def _split_templates(
    domain_template: str, profiles: dict[str, Sequence] | None, target_titles: Sequence[str],
    notes: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Return each sample's prompt text before and after ``{history}``.

    Splitting once lets the token budget re-render a prompt for many history subsets by plain
    concatenation. ``notes`` (one per sample, e.g. :func:`rella_hf.collaborative.collaborative_notes`)
    go on their own line between the history and the question; None leaves the paper's text as is.
    """
    key = _resolve_template(domain_template)
    needed = PROFILE_FIELDS.get(key, ())
    count = len(target_titles)
    profiles = profiles or {}
    missing = [name for name in needed if name not in profiles]
    if missing:
        raise ConfigError(
            f"profiles lack {', '.join(missing)} needed by the {key!r} template; pass a dict with the "
            f"columns {', '.join(needed)}, one value per sample"
        )
    for name in needed:
        if len(profiles[name]) != count:
            raise ConfigError(f"profiles[{name!r}] has {len(profiles[name])} values but there are {count} samples")
    head, tail = PROMPT_TEMPLATES.get(key, key).split("{history}")
    heads: list[str] = []
    tails: list[str] = []
    for index, title in enumerate(target_titles):
        fields = {name: profiles[name][index] for name in needed}
        if key == "ml-1m":
            gender = str(fields["gender"])
            if gender not in _PRONOUNS:
                raise ConfigError(f"sample {index} has gender {gender!r}; expected 'male' or 'female'")
            fields["Possessive"], fields["Subject"], fields["subject"] = _PRONOUNS[gender]
        fields["title"] = title
        heads.append(head.format(**fields))
        tails.append(tail.format(**fields))
    if notes is not None:
        if len(notes) != count:
            raise ConfigError(f"notes has {len(notes)} entries but there are {count} samples")
        # The template's tail starts with the newline that ends the history line.
        tails = [f"\n{note}{tail}" for note, tail in zip(notes, tails)]
    return heads, tails


def _history_items(
    history_titles: Sequence[Sequence[str]], history_ratings: Sequence[Sequence[float]], rating_format: str
) -> list[list[str]]:
    if len(history_titles) != len(history_ratings):
        raise ConfigError(
            f"history_titles has {len(history_titles)} samples but history_ratings has {len(history_ratings)}"
        )
    _check_choice("rating_format", rating_format, RATING_FORMATS)
    items = []
    for index, (titles, ratings) in enumerate(zip(history_titles, history_ratings)):
        if len(titles) != len(ratings):
            raise ConfigError(f"sample {index} has {len(titles)} history titles but {len(ratings)} ratings")
        items.append([history_item_text(title, rating, rating_format) for title, rating in zip(titles, ratings)])
    return items


def _rating_suffixes(ratings: Sequence, rating_format: str) -> tuple[np.ndarray, list[str]]:
    """Per rating, a code into the returned texts ``" ({rating} stars)"`` (``"star"`` at 1 or less).

    Each distinct value is formatted once by :func:`format_rating`, in order of first occurrence,
    so an invalid rating raises the same error, for the same (first) item, as formatting one by one.
    """
    values = np.fromiter((float(rating) for rating in ratings), dtype=np.float64, count=len(ratings)) \
        if not isinstance(ratings, np.ndarray) else ratings.astype(np.float64)
    if not len(values):
        return np.zeros(0, dtype=np.int64), []
    uniques, first, codes = np.unique(values, return_index=True, return_inverse=True)
    suffixes = [""] * len(uniques)
    for code in np.argsort(first, kind="stable"):
        rating = ratings[first[code]]
        rating = rating.item() if isinstance(rating, np.generic) and isinstance(ratings, np.ndarray) else rating
        suffixes[code] = rating_suffix(rating, rating_format)
    return codes.reshape(-1), suffixes


def format_histories(
    item_titles: Sequence,
    history_rows: np.ndarray,
    history_ratings: Sequence,
    history_offsets: np.ndarray,
    rating_format: str,
    history_format: str = "list",
) -> list[str]:
    """:func:`format_history` of many samples at once, vectorised over their items (same text, byte for byte).

    Each distinct title and rating is formatted once in Python; the numbered items and their
    joining are Arrow string kernels. In ``"list"`` format an item's ``repr`` quotes are those of
    its title, since the index and the ``" (4 stars)"`` suffix hold no quote or backslash.

    Args:
        item_titles: title of every item row (the catalogue).
        history_rows: the shown items' rows into ``item_titles``, all samples concatenated.
        history_ratings: the matching ratings, concatenated the same way.
        history_offsets: ``n_samples + 1`` offsets into the concatenation (sample i's items are
            ``history_offsets[i]:history_offsets[i + 1]``).
        rating_format: ``"int"`` or ``"float1"``, see :func:`format_rating`.
        history_format: ``"list"`` or ``"lines"``, see :func:`format_history`.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    _check_choice("history_format", history_format, HISTORY_FORMATS)
    _check_choice("rating_format", rating_format, RATING_FORMATS)
    history_rows = np.asarray(history_rows, dtype=np.int64)
    offsets = np.asarray(history_offsets, dtype=np.int64)
    if len(history_rows) != len(history_ratings) or (len(offsets) and offsets[-1] != len(history_rows)):
        raise ConfigError(
            f"{len(history_rows)} history rows, {len(history_ratings)} ratings and offsets ending at "
            f"{offsets[-1] if len(offsets) else None} must describe the same items"
        )
    rating_codes, suffixes = _rating_suffixes(history_ratings, rating_format)
    rows, title_codes = np.unique(history_rows, return_inverse=True)
    texts = [f"{item_titles[row]}" for row in rows.tolist()]
    lengths = np.diff(offsets)
    index = np.arange(len(history_rows), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    longest = int(lengths.max()) if len(lengths) else 0
    if history_format == "list":
        quoted = [repr(text) for text in texts]
        quote_codes = np.array([text[0] == '"' for text in quoted], dtype=np.int64)[title_codes]
        # item = quote + "i. " + escaped title + " (r stars)" + quote
        openings = pa.array([f"{quote}{i}. " for quote in "'\"" for i in range(longest)], pa.large_string())
        bodies = pa.array([text[1:-1] for text in quoted], pa.large_string())
        closings = pa.array([f"{suffix}{quote}" for suffix in suffixes for quote in "'\""], pa.large_string())
        pieces = [openings.take(pa.array(quote_codes * longest + index)), bodies.take(pa.array(title_codes)),
                  closings.take(pa.array(rating_codes * 2 + quote_codes))]
        separator, head, tail = ", ", "[", "]"
    else:
        pieces = [pa.array([f"{i}. " for i in range(longest)], pa.large_string()).take(pa.array(index)),
                  pa.array(texts, pa.large_string()).take(pa.array(title_codes)),
                  pa.array(suffixes, pa.large_string()).take(pa.array(rating_codes))]
        separator, head, tail = "\n", "", ""
    def text(value: str):
        return pa.scalar(value, pa.large_string())

    items = pc.binary_join_element_wise(*pieces, text("")) if len(history_rows) else pa.array([], pa.large_string())
    joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), items), text(separator))
    if head or tail:
        joined = pc.binary_join_element_wise(text(head), joined, text(tail), text(""))
    return joined.to_pylist()


def _assemble(heads: list[str], histories: list[str], tails: list[str]) -> list[str]:
    return [head + history + tail for head, history, tail in zip(heads, histories, tails)]


def render_prompts_flat(
    domain_template: str,
    profiles: dict[str, Sequence] | None,
    item_titles: Sequence,
    history_rows: np.ndarray,
    history_ratings: Sequence,
    history_offsets: np.ndarray,
    target_titles: Sequence[str],
    rating_format: str,
    history_format: str = "list",
    notes: Sequence[str] | None = None,
) -> list[str]:
    """:func:`render_prompts` for histories given flat (item rows + offsets), as a builder holds them.

    Same text as :func:`render_prompts`, byte for byte, without a Python call per shown item.

    Args:
        domain_template: ``"ml-1m"``, ``"ml-latest"`` or ``"book-crossing"``.
        profiles: see :func:`render_prompts`.
        item_titles: title of every item row.
        history_rows: the shown items' rows, all samples concatenated in shown order.
        history_ratings: the matching ratings.
        history_offsets: ``n_samples + 1`` offsets into the concatenation.
        target_titles: per sample, the title of the item to predict.
        rating_format: ``"int"`` or ``"float1"``.
        history_format: ``"list"`` or ``"lines"``.
        notes: per sample, sentences between the history and the question (None: the paper's prompt).
    """
    _check_choice("history_format", history_format, HISTORY_FORMATS)
    if len(history_offsets) != len(target_titles) + 1:
        raise ConfigError(
            f"history_offsets has {len(history_offsets)} entries but there are {len(target_titles)} samples; "
            "expected one more offset than samples"
        )
    heads, tails = _split_templates(domain_template, profiles, target_titles, notes)
    histories = format_histories(item_titles, history_rows, history_ratings, history_offsets, rating_format,
                                 history_format)
    return _assemble(heads, histories, tails)


def render_prompts(
    domain_template: str,
    profiles: dict[str, Sequence] | None,
    history_titles: Sequence[Sequence[str]],
    history_ratings: Sequence[Sequence[float | int]],
    target_titles: Sequence[str],
    rating_format: str,
    history_format: str = "list",
) -> list[str]:
    """Fill the paper's template for many samples (the raw prompts, before chat wrapping).

    Args:
        domain_template: ``"ml-1m"`` (also ML-100K), ``"ml-latest"`` (the ml-latest / ML-25M family)
            or ``"book-crossing"``.
        profiles: column -> one value per sample: ``gender`` ("male"/"female"), ``job``, ``age``
            for ``"ml-1m"``; ``location``, ``age`` for ``"book-crossing"``; None for ``"ml-latest"``.
        history_titles: per sample, the titles of the shown history, in shown order.
        history_ratings: per sample, the matching ratings.
        target_titles: per sample, the title of the item to predict.
        rating_format: ``"int"`` or ``"float1"``, see :func:`format_rating`.
        history_format: ``"list"`` (the paper's) or ``"lines"``, see :func:`format_history`.
    """
    _check_choice("history_format", history_format, HISTORY_FORMATS)
    if len(history_titles) != len(target_titles):
        raise ConfigError(f"history_titles has {len(history_titles)} samples but target_titles has {len(target_titles)}")
    heads, tails = _split_templates(domain_template, profiles, target_titles)
    if len(history_titles) != len(history_ratings):
        raise ConfigError(
            f"history_titles has {len(history_titles)} samples but history_ratings has {len(history_ratings)}"
        )
    _check_choice("rating_format", rating_format, RATING_FORMATS)
    lengths = np.fromiter((len(titles) for titles in history_titles), dtype=np.int64, count=len(history_titles))
    for index, (titles, ratings) in enumerate(zip(history_titles, history_ratings)):
        if len(titles) != len(ratings):
            raise ConfigError(f"sample {index} has {len(titles)} history titles but {len(ratings)} ratings")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Each distinct title text once; the items then point at it, like rows of a catalogue.
    texts = [f"{title}" for title in chain.from_iterable(history_titles)]
    catalogue: dict[str, int] = {}
    rows = np.fromiter((catalogue.setdefault(text, len(catalogue)) for text in texts), dtype=np.int64, count=len(texts))
    ratings = list(chain.from_iterable(history_ratings))
    histories = format_histories(list(catalogue), rows, ratings, offsets, rating_format, history_format)
    return _assemble(heads, histories, tails)


def render_prompt(
    domain_template: str,
    profile: dict | None,
    history_titles: Sequence[str],
    history_ratings: Sequence[float | int],
    target_title: str,
    rating_format: str,
    history_format: str = "list",
) -> str:
    """Fill the paper's template for one sample; see :func:`render_prompts`.

    Args:
        domain_template: ``"ml-1m"``, ``"ml-latest"`` or ``"book-crossing"``.
        profile: field -> value for this user (None for ``"ml-latest"``).
        history_titles: titles of the shown history, in shown order.
        history_ratings: the matching ratings.
        target_title: title of the item to predict.
        rating_format: ``"int"`` or ``"float1"``.
        history_format: ``"list"`` or ``"lines"``.
    """
    profiles = None if profile is None else {name: [value] for name, value in profile.items()}
    return render_prompts(
        domain_template, profiles, [history_titles], [history_ratings], [target_title], rating_format, history_format
    )[0]


# --------------------------------------------------------------------------------------------
# Chat wrapping
# --------------------------------------------------------------------------------------------


def has_chat_template(tokenizer) -> bool:
    """True when ``tokenizer`` carries a chat template (then it wraps prompts, else Vicuna v1.1 does).

    Args:
        tokenizer: a Hugging Face tokenizer or None.
    """
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def wrap_prompts(raw_prompts: Sequence[str], tokenizer=None) -> list[str]:
    """Wrap many raw prompts as single user turns awaiting the assistant's answer.

    Uses the tokenizer's chat template (``add_generation_prompt=True``) when it has one, rendered
    in one batched call; otherwise Vicuna v1.1:
    ``"A chat between ... questions. USER: {prompt} ASSISTANT:"``.

    Args:
        raw_prompts: prompts from :func:`render_prompts`.
        tokenizer: the model's tokenizer, or None for Vicuna v1.1.
    """
    if not has_chat_template(tokenizer):
        return [f"{VICUNA_SYSTEM} USER: {prompt} ASSISTANT:" for prompt in raw_prompts]
    if not raw_prompts:
        return []
    frame = _chat_frame(tokenizer, raw_prompts[0])
    if frame is not None:
        head, tail = frame
        return [head + prompt + tail for prompt in raw_prompts]
    conversations = [[{"role": "user", "content": prompt}] for prompt in raw_prompts]
    wrapped = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
    return list(wrapped)


def _chat_frame(tokenizer, example: str) -> tuple[str, str] | None:
    """The text a chat template puts before and after a user message, when it leaves the message as is.

    Rendering the template (Jinja) per prompt dominates building large datasets; most templates
    only frame the message, so it is rendered for probes and the example, and reused when all
    agree. Returns None when the template rewrites the message, and then every prompt is rendered.
    """

    def render(content: str) -> str:
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)

    probe = "\x00rella-probe\x00"
    framed = render(probe)
    if framed.count(probe) != 1:
        return None
    head, tail = framed.split(probe)
    for content in ("\x00other probe, with words\x00", example):
        if render(content) != head + content + tail:
            return None
    return head, tail


def wrap_prompt(raw_prompt: str, tokenizer=None) -> str:
    """Wrap one raw prompt as a user turn awaiting the assistant's answer; see :func:`wrap_prompts`.

    Args:
        raw_prompt: a prompt from :func:`render_prompt`.
        tokenizer: the model's tokenizer, or None for Vicuna v1.1.
    """
    return wrap_prompts([raw_prompt], tokenizer)[0]


def special_prefix_ids(tokenizer) -> list[int]:
    """Ids the tokenizer puts before a text (e.g. BOS); empty when it adds none.

    Args:
        tokenizer: a Hugging Face tokenizer.
    """
    probe = "Hello"
    with_special = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return with_special[:start]
    return []


def prompt_token_counts(wrapped_prompts: Sequence[str], tokenizer, prefix: list[int] | None = None) -> list[int]:
    """Number of tokens of each wrapped prompt, tokenized the way the model will see it.

    The rule is the one :func:`rella_hf.scoring.encode_prompts` applies: the text is tokenized
    without added special tokens (a chat template writes its own), the tokenizer's prefix (BOS)
    is prepended unless the text already starts with it, and no EOS is appended (the answer follows).

    Args:
        wrapped_prompts: prompts from :func:`wrap_prompts`.
        tokenizer: the same tokenizer that wrapped them.
        prefix: precomputed :func:`special_prefix_ids` (computed when None).
    """
    if not wrapped_prompts:
        return []
    if prefix is None:
        prefix = special_prefix_ids(tokenizer)
    encoded = tokenizer(
        list(wrapped_prompts), add_special_tokens=False, return_attention_mask=False,
        return_token_type_ids=False, verbose=False,
    )["input_ids"]
    width = len(prefix)
    return [len(ids) + (width if width and list(ids[:width]) != prefix else 0) for ids in encoded]
