"""Tests of rella_hf.prompts: the paper's templates character for character, wrapping, token budgets."""

from __future__ import annotations

import pandas as pd
import pytest

from rella_hf import prompts
from rella_hf.errors import ConfigError, RellaError
from rella_hf.prompt_budget import fit_prompt_budget, fit_prompt_budgets
from rella_hf.prompts import (
    NO_ANSWER,
    VICUNA_SYSTEM,
    YES_ANSWER,
    answer_completion,
    format_history,
    format_rating,
    history_item_text,
    prompt_token_counts,
    render_prompt,
    render_prompts,
    special_prefix_ids,
    wrap_prompt,
    wrap_prompts,
)

CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def make_tokenizer(chat_template: str | None = None):
    """A real byte-level BPE tokenizer trained on prompt-like text (adds BOS like Llama's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        prompts.PROMPT_TEMPLATES["ml-1m"], prompts.PROMPT_TEMPLATES["book-crossing"], VICUNA_SYSTEM,
        "Heat (1995) Toy Story (1995) Schindler's List (1993) Jumanji (1995) 5 stars 1 star 3.5 stars",
    ] * 3
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = chat_template
    return tokenizer


ML1M_PROFILE = {"gender": "male", "job": "academic/educator", "age": "25-34"}
TITLES = ["Heat (1995)", "Schindler's List (1993)", "Toy Story (1995)"]
RATINGS = [5, 1, 3]
TARGET = "Jumanji (1995)"
PAPER_HISTORY = "['0. Heat (1995) (5 stars)', \"1. Schindler's List (1993) (1 star)\", '2. Toy Story (1995) (3 stars)']"


# ---------------------------------------------------------------------------------------------
# Templates, character for character
# ---------------------------------------------------------------------------------------------


def test_ml1m_male_prompt_matches_paper_exactly():
    expected = (
        "The user is a male. His job is academic/educator. His age is 25-34.\n"
        "He watched the following movies in order in the past, and rated them:\n"
        + PAPER_HISTORY + "\n"
        "Based on the movies he has watched, deduce if he will like the movie ***Jumanji (1995)***.\n"
        "Note that more stars the user rated the movie, the user liked the movie more.\n"
        "You should ONLY tell me yes or no."
    )
    assert render_prompt("ml-1m", ML1M_PROFILE, TITLES, RATINGS, TARGET, "int") == expected


def test_ml1m_female_pronouns_and_ml100k_alias():
    profile = {"gender": "female", "job": "writer", "age": "Under 18"}
    text = render_prompt("ml-100k", profile, ["Heat (1995)"], [4], "Heat (1995)", "int")
    assert text.startswith(
        "The user is a female. Her job is writer. Her age is Under 18.\n"
        "She watched the following movies in order in the past, and rated them:\n"
        "['0. Heat (1995) (4 stars)']\n"
        "Based on the movies she has watched, deduce if she will like the movie ***Heat (1995)***.\n"
    )


def test_ml_latest_prompt_prints_half_stars_as_in_the_csv():
    text = render_prompt("ml-latest", None, ["A", "B", "C", "D"], [3.5, 4.0, 0.5, 1.0], "E", "float1")
    assert text == (
        "The user watched the following movies in the past, and rated them:\n"
        "['0. A (3.5 stars)', '1. B (4.0 stars)', '2. C (0.5 star)', '3. D (1.0 star)']\n"
        "Based on the movies the user has watched, deduce if the user will like the movie ***E***.\n"
        "Note that more stars the user rated the movie, the user liked the movie more.\n"
        "You should ONLY tell me yes or no."
    )


def test_book_crossing_prompt_matches_paper_exactly():
    profile = {"location": "usa", "age": "25-29"}
    text = render_prompt("book-crossing", profile, ["Dune", "Emma"], [0, 10], "Persuasion", "int")
    assert text == (
        "The user's location is usa. The user's age is 25-29.\n"
        "The user read the following books in the past and rated them:\n"
        "['0. Dune (0 star)', '1. Emma (10 stars)']\n"
        "Based on the books the user has read, deduce if the user will like the book ***Persuasion***.\n"
        "Note that more stars the user rated the book, the user liked the book more.\n"
        "You should ONLY tell me yes or no."
    )


def paper_reference_ml1m(profile, titles, ratings, target):
    """ReLLa's released code for the ML-1M prompt, transcribed (its f-strings and list repr)."""
    nominative = "she" if profile["gender"] == "female" else "he"
    objective = "Her" if profile["gender"] == "female" else "His"
    history = [f"{name} ({star}" + (" stars)" if star > 1 else " star)") for name, star in zip(titles, ratings)]
    return (
        f"The user is a {profile['gender']}. "
        f"{objective} job is {profile['job']}. {objective} age is {profile['age']}.\n"
        f"{nominative.capitalize()} watched the following movies in order in the past, and rated them:\n"
        f"{list(map(lambda x: f'{x[0]}. {x[1]}', enumerate(history)))}\n"
        f"Based on the movies {nominative} has watched, deduce if {nominative} will like the movie ***{target}***.\n"
        f"Note that more stars the user rated the movie, the user liked the movie more.\n"
        f"You should ONLY tell me yes or no."
    )


def test_batch_rendering_equals_paper_code_on_awkward_titles():
    titles = [
        ['It\'s "Quoted" (2000)', "Braces {x} (1999)", "Back\\slash"],
        [],
        ["Amélie (2001)", "Heat (1995)"],
    ]
    ratings = [[1, 2, 5], [], [4, 0]]
    targets = ["T {0}", "Only target", "O'Brien"]
    profiles = {"gender": ["male", "female", "male"], "job": ["lawyer", "artist", "other"], "age": ["18-24", "56+", "35-44"]}
    texts = render_prompts("ml-1m", profiles, titles, ratings, targets, "int", "list")
    for index, text in enumerate(texts):
        profile = {name: values[index] for name, values in profiles.items()}
        assert text == paper_reference_ml1m(profile, titles[index], ratings[index], targets[index])


def test_lines_history_format_puts_one_item_per_line():
    text = render_prompt("ml-latest", None, ["A", "B"], [5.0, 1.0], "C", "float1", history_format="lines")
    assert "rated them:\n0. A (5.0 stars)\n1. B (1.0 star)\nBased on the movies" in text
    assert format_history([], "lines") == "" and format_history([], "list") == "[]"


def test_rating_formats_and_star_rule():
    assert format_rating(4, "int") == "4" and format_rating(4.0, "int") == "4"
    assert format_rating(4, "float1") == "4.0" and format_rating(3.5, "float1") == "3.5"
    assert history_item_text("X", 0.5, "float1") == "X (0.5 star)"
    assert history_item_text("X", 1.5, "float1") == "X (1.5 stars)"
    with pytest.raises(ConfigError, match="float1"):
        format_rating(3.5, "int")
    with pytest.raises(ConfigError, match="rating_format"):
        format_rating(3, "stars")


def test_numpy_ratings_print_like_python_ones():
    import numpy as np

    assert history_item_text("X", np.float32(3.5), "float1") == "X (3.5 stars)"
    assert history_item_text("X", np.float32(4.0), "int") == "X (4 stars)"


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="job"):
        render_prompts("ml-1m", {"gender": ["male"], "age": ["1"]}, [["A"]], [[1]], ["B"], "int")
    with pytest.raises(ConfigError, match="gender"):
        render_prompt("ml-1m", {"gender": "M", "job": "x", "age": "1"}, ["A"], [1], "B", "int")
    with pytest.raises(ConfigError, match="domain_template"):
        render_prompt("amazon", None, ["A"], [1], "B", "int")
    with pytest.raises(ConfigError, match="history_format"):
        render_prompt("ml-latest", None, ["A"], [1], "B", "int", history_format="json")
    with pytest.raises(RellaError, match="ratings"):
        render_prompt("ml-latest", None, ["A", "B"], [1], "B", "int")


def test_item_texts_reexported():
    items = pd.DataFrame({"title": ["Heat (1995)"], "genre": ["Action"]})
    assert prompts.item_texts(items, "movie") == ["Here is a movie. Its title is Heat (1995). The movie's genre is Action."]


# ---------------------------------------------------------------------------------------------
# Wrapping and answers
# ---------------------------------------------------------------------------------------------


def test_vicuna_wrapper_when_no_chat_template():
    expected = (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: Hello? ASSISTANT:"
    )
    assert wrap_prompt("Hello?") == expected
    assert wrap_prompt("Hello?", make_tokenizer()) == expected
    assert answer_completion(expected, True) == " " + YES_ANSWER
    assert answer_completion(expected, False) == " " + NO_ANSWER


def test_chat_template_wrapper_adds_generation_prompt():
    tokenizer = make_tokenizer(CHAT_TEMPLATE)
    wrapped = wrap_prompt("Hello?", tokenizer)
    assert wrapped == "<s>user\nHello?</s>\n<s>assistant\n"
    assert answer_completion(wrapped, True) == "Yes."
    assert wrap_prompts(["a", "b"], tokenizer) == [wrap_prompt("a", tokenizer), wrap_prompt("b", tokenizer)]
    assert wrap_prompts([], tokenizer) == []


def test_token_counts_add_bos_once_and_never_eos():
    chat = make_tokenizer(CHAT_TEMPLATE)
    wrapped = wrap_prompt("Hello?", chat)
    plain_ids = chat(wrapped, add_special_tokens=False)["input_ids"]
    # The chat template already wrote <s> at the start, so no second BOS is counted.
    assert plain_ids[0] == chat.bos_token_id
    assert prompt_token_counts([wrapped], chat) == [len(plain_ids)]
    # Vicuna text does not start with <s>: the tokenizer's BOS is counted once.
    plain = make_tokenizer()
    vicuna = wrap_prompt("Hello?", plain)
    assert prompt_token_counts([vicuna], plain) == [len(plain(vicuna, add_special_tokens=False)["input_ids"]) + 1]
    assert special_prefix_ids(plain) == [plain.bos_token_id]


def test_token_counts_agree_with_scoring_encoder():
    scoring = pytest.importorskip("rella_hf.scoring")
    for tokenizer in (make_tokenizer(), make_tokenizer(CHAT_TEMPLATE)):
        texts = wrap_prompts([render_prompt("ml-1m", ML1M_PROFILE, TITLES, RATINGS, TARGET, "int"), "Hi"], tokenizer)
        assert prompt_token_counts(texts, tokenizer) == [len(ids) for ids in scoring.encode_prompts(tokenizer, texts)]


# ---------------------------------------------------------------------------------------------
# Token budget
# ---------------------------------------------------------------------------------------------

LONG_TITLES = [f"Movie number {index} ({1990 + index})" for index in range(9)]
LONG_RATINGS = [5, 4, 3, 2, 1, 5, 4, 3, 2]


def tokens_for(tokenizer, kept):
    raw = render_prompt("ml-1m", ML1M_PROFILE, [LONG_TITLES[i] for i in kept], [LONG_RATINGS[i] for i in kept], TARGET, "int")
    return prompt_token_counts([wrap_prompt(raw, tokenizer)], tokenizer)[0]


@pytest.mark.parametrize("chat_template", [None, CHAT_TEMPLATE])
def test_budget_keeps_largest_fitting_history_in_drop_order(chat_template):
    tokenizer = make_tokenizer(chat_template)
    drop_order = [2, 0, 8, 3, 1, 7, 4, 6, 5]
    keep_order = drop_order[::-1]
    for keep in range(len(LONG_TITLES) + 1):
        budget = tokens_for(tokenizer, sorted(keep_order[:keep]))
        fitted = fit_prompt_budget(
            "ml-1m", ML1M_PROFILE, LONG_TITLES, LONG_RATINGS, TARGET, tokenizer=tokenizer,
            max_prompt_tokens=budget, rating_format="int", drop_order=drop_order,
        )
        assert fitted.kept == sorted(keep_order[:keep])
        assert fitted.num_tokens == budget
        assert fitted.wrapped_prompt == wrap_prompt(fitted.raw_prompt, tokenizer)
        # The question and target are whole; only history shrank, renumbered from 0.
        assert fitted.raw_prompt.endswith(
            f"deduce if he will like the movie ***{TARGET}***.\n"
            "Note that more stars the user rated the movie, the user liked the movie more.\n"
            "You should ONLY tell me yes or no."
        )
        if keep:
            assert f"'0. {LONG_TITLES[fitted.kept[0]]} (" in fitted.raw_prompt


def test_budget_between_sizes_keeps_the_fitting_one_and_default_drops_oldest():
    tokenizer = make_tokenizer()
    budget = tokens_for(tokenizer, [5, 6, 7, 8]) + 1  # one token short of the next size
    fitted = fit_prompt_budget(
        "ml-1m", ML1M_PROFILE, LONG_TITLES, LONG_RATINGS, TARGET,
        tokenizer=tokenizer, max_prompt_tokens=budget, rating_format="int",
    )
    assert fitted.kept == [5, 6, 7, 8]
    assert tokens_for(tokenizer, [4, 5, 6, 7, 8]) > budget >= fitted.num_tokens


def test_budget_raises_when_even_no_history_fits():
    tokenizer = make_tokenizer()
    budget = tokens_for(tokenizer, []) - 1
    with pytest.raises(ConfigError, match="even with no history"):
        fit_prompt_budget(
            "ml-1m", ML1M_PROFILE, LONG_TITLES, LONG_RATINGS, TARGET,
            tokenizer=tokenizer, max_prompt_tokens=budget, rating_format="int",
        )


def test_batched_budget_equals_one_by_one():
    tokenizer = make_tokenizer(CHAT_TEMPLATE)
    histories = [LONG_TITLES, LONG_TITLES[:3], [], LONG_TITLES[2:], LONG_TITLES[::-1]]
    ratings = [LONG_RATINGS, LONG_RATINGS[:3], [], LONG_RATINGS[2:], LONG_RATINGS[::-1]]
    drop_orders = [list(range(len(history)))[::-1] for history in histories]
    profiles = {name: [value] * len(histories) for name, value in ML1M_PROFILE.items()}
    budget = tokens_for(tokenizer, [0, 1, 2, 3])
    batched = fit_prompt_budgets(
        "ml-1m", profiles, histories, ratings, [TARGET] * len(histories), tokenizer=tokenizer,
        max_prompt_tokens=budget, rating_format="int", drop_orders=drop_orders, batch_size=2, progress=False,
    )
    for index, result in enumerate(batched):
        single = fit_prompt_budget(
            "ml-1m", ML1M_PROFILE, histories[index], ratings[index], TARGET, tokenizer=tokenizer,
            max_prompt_tokens=budget, rating_format="int", drop_order=drop_orders[index],
        )
        assert result == single
        assert result.num_tokens <= budget
    assert batched[1].kept == [0, 1, 2] and batched[2].kept == []


def test_budget_rejects_bad_drop_order():
    with pytest.raises(ConfigError, match="permutation"):
        fit_prompt_budget(
            "ml-latest", None, ["A", "B"], [1, 2], "C", tokenizer=make_tokenizer(),
            max_prompt_tokens=1000, rating_format="int", drop_order=[0, 0],
        )


def test_budget_search_matches_brute_force_on_uneven_items():
    # Items of very different lengths make the first guess wrong in both directions, so the
    # gallop and bisection paths all run.
    tokenizer = make_tokenizer()
    titles = ["A", "Heat (1995) " * 6, "B", "Toy Story (1995) " * 3, "C", "Jumanji " * 9, "D", "E", "Heat " * 4]
    ratings = [1, 2, 3, 4, 5, 1, 2, 3, 4]
    drop_order = [4, 1, 7, 0, 8, 2, 6, 3, 5]
    keep_order = drop_order[::-1]
    sizes = [
        prompt_token_counts([wrap_prompt(render_prompt(
            "ml-latest", None, [titles[i] for i in sorted(keep_order[:keep])],
            [ratings[i] for i in sorted(keep_order[:keep])], "X", "int", "lines"))], tokenizer)[0]
        for keep in range(len(titles) + 1)
    ]
    budgets = list(range(sizes[0], sizes[-1] + 3))
    results = fit_prompt_budgets(
        "ml-latest", None, [titles] * len(budgets), [ratings] * len(budgets), ["X"] * len(budgets),
        tokenizer=tokenizer, max_prompt_tokens=budgets[0], rating_format="int", history_format="lines",
        drop_orders=[drop_order] * len(budgets), progress=False,
    )
    assert all(result.kept == [] for result in results)
    for budget in budgets:
        expected_keep = max(keep for keep, size in enumerate(sizes) if size <= budget)
        fitted = fit_prompt_budget(
            "ml-latest", None, titles, ratings, "X", tokenizer=tokenizer, max_prompt_tokens=budget,
            rating_format="int", history_format="lines", drop_order=drop_order,
        )
        assert fitted.kept == sorted(keep_order[:expected_keep])
        assert fitted.num_tokens == sizes[expected_keep] <= budget


@pytest.mark.parametrize("size", [1, 2, 5, 17])
def test_search_finds_the_threshold_from_any_first_guess(size):
    from rella_hf.prompt_budget import _Search

    for answer in range(size + 1):  # largest fitting number of items
        for guess in range(1, size + 1):
            search, probe, probes = _Search(low=0, high=size + 1), guess, 0
            while probe is not None:
                assert search.low < probe < search.high
                probes += 1
                probe = search.next_probe(probe, probe <= answer)
            assert search.low == answer and search.high == answer + 1
            assert probes <= 2 * size.bit_length() + 2


def _reference_histories(titles, ratings, rating_format, history_format):
    """The per-item rendering every vectorised path must reproduce byte for byte."""
    return [format_history([history_item_text(title, rating, rating_format) for title, rating in zip(ts, rs)],
                           history_format) for ts, rs in zip(titles, ratings)]


@pytest.mark.parametrize("history_format", ["list", "lines"])
@pytest.mark.parametrize("rating_format, values", [("float1", [0.5, 1.0, 1.5, 3.0, 4.5, 5.0, 0.0]),
                                                   ("int", [0, 1, 2, 5, 10, 1.0])])
def test_vectorised_rendering_is_byte_identical(history_format, rating_format, values):
    import random

    import numpy as np

    from rella_hf.prompts import format_histories, render_prompts_flat

    rng = random.Random(0)
    alphabet = ["a", "B", " ", "'", '"', "\\", "\n", "\t", "\x00", "\x7f", "é", "😀", "\u200b", "(", ")", ",", "[",
                "]", "{", "}", "\r", "\xa0"]
    if history_format == "list":
        alphabet.append("\ud800")  # repr escapes it; lines format would carry it raw (not encodable)
    catalogue = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(120)]
    catalogue += [None, 3, 2.5, "Schindler's List (1993)", 'Say "Hi"', "It's \"both\""]
    lengths = [rng.randint(0, 35) for _ in range(150)] + [0]
    rows = [[rng.randrange(len(catalogue)) for _ in range(n)] for n in lengths]
    ratings = [[rng.choice(values) for _ in range(n)] for n in lengths]
    titles = [[catalogue[row] for row in sample] for sample in rows]
    expected = _reference_histories(titles, ratings, rating_format, history_format)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat_rows = np.array([row for sample in rows for row in sample], dtype=np.int64)
    flat_ratings = np.array([rating for sample in ratings for rating in sample], dtype=np.float32)
    assert format_histories(catalogue, flat_rows, flat_ratings, offsets, rating_format, history_format) == expected
    targets = [f"T{index}" for index in range(len(rows))]
    from_lists = render_prompts("ml-latest", None, titles, ratings, targets, rating_format, history_format)
    flat = render_prompts_flat("ml-latest", None, catalogue, flat_rows, flat_ratings, offsets, targets, rating_format,
                               history_format)
    assert from_lists == flat
    head, tail = prompts.PROMPT_TEMPLATES["ml-latest"].split("{history}")
    assert from_lists == [head + history + tail.format(title=target) for history, target in zip(expected, targets)]


def test_vectorised_rendering_raises_for_the_first_bad_rating():
    with pytest.raises(ConfigError, match="rating 3.5 is not an integer"):
        render_prompts("ml-latest", None, [["A", "B"], ["C"]], [[4, 3.5], [2.5]], ["X", "Y"], "int")
    with pytest.raises(ConfigError, match="sample 1 has 2 history titles but 1 ratings"):
        render_prompts("ml-latest", None, [["A"], ["B", "C"]], [[4], [3]], ["X", "Y"], "int")
