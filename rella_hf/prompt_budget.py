"""Token budgets of ReLLa prompts: drop history items until the wrapped prompt fits.

:func:`fit_prompt_budget` / :func:`fit_prompt_budgets` drop history items (in a drop order the
caller chooses: least relevant or oldest first) until the wrapped prompt fits ``max_prompt_tokens``;
the profile, the question and the answer are never truncated. The prompts themselves come from
:mod:`rella_hf.prompts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError
from .prompts import (
    HISTORY_FORMATS,
    _check_choice,
    _history_items,
    _split_templates,
    format_history,
    prompt_token_counts,
    special_prefix_ids,
    wrap_prompts,
)


@dataclass
class _Search:
    """One sample's search for the largest fitting number of kept items.

    ``low`` items are known to fit and ``high`` known not to (``n + 1`` stands for "more than
    there are"). Probes gallop away from the first guess with doubling steps until a result flips,
    then bisect the bracket.
    """

    low: int
    high: int
    step: int = 1
    direction: int = 0
    galloping: bool = True

    def next_probe(self, probe: int, fit: bool) -> int | None:
        """Record that ``probe`` items fit (or not) and return the next size to try, None when found."""
        if fit:
            self.low = probe
        else:
            self.high = probe
        if self.high - self.low <= 1:
            return None
        direction = 1 if fit else -1
        if self.direction and direction != self.direction:
            self.galloping = False
        self.direction = direction
        if self.galloping:
            target = probe + direction * self.step
            self.step *= 2
        else:
            target = (self.low + self.high) // 2
        return min(max(target, self.low + 1), self.high - 1)


@dataclass
class FittedPrompt:
    """A prompt that fits the token budget.

    Attributes:
        kept: positions (into the given shown history, ascending) of the items kept.
        raw_prompt: the filled template with only the kept items.
        wrapped_prompt: ``raw_prompt`` chat-wrapped.
        num_tokens: tokens of ``wrapped_prompt`` as the model sees it (see :func:`prompt_token_counts`).
    """

    kept: list[int]
    raw_prompt: str
    wrapped_prompt: str
    num_tokens: int


def fit_prompt_budgets(
    domain_template: str,
    profiles: dict[str, Sequence] | None,
    history_titles: Sequence[Sequence[str]],
    history_ratings: Sequence[Sequence[float | int]],
    target_titles: Sequence[str],
    *,
    tokenizer,
    max_prompt_tokens: int,
    rating_format: str,
    history_format: str = "list",
    drop_orders: Sequence[Sequence[int]] | None = None,
    notes: Sequence[str] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> list[FittedPrompt]:
    """Keep, per sample, the most history items whose wrapped prompt fits ``max_prompt_tokens``.

    Items are dropped in ``drop_orders`` order (e.g. least similar first for SUBR, oldest first
    for recent-K); the kept ones stay in shown order and are renumbered from 0. Only history is
    ever dropped: profile, question and answer are never truncated. Keeping ``k`` items means
    dropping the first ``n - k`` of the drop order, and the prompt grows with ``k``.

    The search is exact: the result keeps ``k`` items whose whole wrapped prompt, tokenized, fits,
    and ``k + 1`` items (when there are more) do not. To tokenize little, the first guess comes
    from token counts of the individual items (each distinct item text is tokenized once), then an
    exponential search from that guess brackets the answer and a binary search closes it; with a
    good guess that is two or three tokenizations of whole prompts per sample. The searches of
    ``batch_size`` samples advance in lockstep, so each step is one batched tokenizer call.

    Args:
        domain_template: ``"ml-1m"``, ``"ml-latest"`` or ``"book-crossing"``.
        profiles: see :func:`render_prompts`.
        history_titles: per sample, the shown history titles, in shown order.
        history_ratings: per sample, the matching ratings.
        target_titles: per sample, the target title.
        tokenizer: the model's tokenizer (its chat template wraps the prompt; Vicuna v1.1 without one).
        max_prompt_tokens: budget for the wrapped prompt, answer excluded.
        rating_format: ``"int"`` or ``"float1"``.
        history_format: ``"list"`` or ``"lines"``.
        drop_orders: per sample, a permutation of ``range(len(history))`` listing positions in the
            order they are dropped. None drops the first shown (oldest) items first.
        notes: per sample, sentences between the history and the question (never dropped).
        batch_size: samples whose searches share tokenizer calls.
        progress: show a progress bar.

    Raises:
        ConfigError: when a prompt does not fit even with no history item.
    """
    if max_prompt_tokens <= 0:
        raise ConfigError(f"max_prompt_tokens={max_prompt_tokens} must be a positive number of tokens")
    if batch_size <= 0:
        raise ConfigError(f"batch_size={batch_size} must be positive")
    _check_choice("history_format", history_format, HISTORY_FORMATS)
    if len(history_titles) != len(target_titles):
        raise ConfigError(f"history_titles has {len(history_titles)} samples but target_titles has {len(target_titles)}")
    heads, tails = _split_templates(domain_template, profiles, target_titles, notes)
    items = _history_items(history_titles, history_ratings, rating_format)
    if drop_orders is None:
        drop_orders = [range(len(shown)) for shown in items]
    elif len(drop_orders) != len(items):
        raise ConfigError(f"drop_orders has {len(drop_orders)} entries but there are {len(items)} samples")

    # Per sample, positions ordered from most to least worth keeping: keeping k items keeps the
    # first k of this list.
    keep_orders: list[list[int]] = []
    for index, (order, shown) in enumerate(zip(drop_orders, items)):
        order = [int(position) for position in order]
        if sorted(order) != list(range(len(shown))):
            raise ConfigError(
                f"drop_orders[{index}] must be a permutation of range({len(shown)}) (the shown history positions)"
            )
        keep_orders.append(order[::-1])

    def render(sample: int, keep: int) -> tuple[list[int], str]:
        kept = sorted(keep_orders[sample][:keep])
        shown = [items[sample][position] for position in kept]
        return kept, heads[sample] + format_history(shown, history_format) + tails[sample]

    def count_plain(texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = tokenizer(
            texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False, verbose=False
        )
        return [len(ids) for ids in encoded["input_ids"]]

    prefix = special_prefix_ids(tokenizer)
    # Token counts of distinct item texts; histories share items, so each is tokenized once.
    item_tokens: dict[str, int] = {}

    results: list[FittedPrompt | None] = [None] * len(items)
    from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

    bar = tqdm(total=len(items), desc="Fitting prompts to the token budget", unit="prompt", disable=not progress)
    for start in range(0, len(items), batch_size):
        samples = list(range(start, min(start + batch_size, len(items))))
        best: dict[int, FittedPrompt] = {}

        def evaluate(requests: list[tuple[int, int]]) -> list[bool]:
            rendered = [render(sample, keep) for sample, keep in requests]
            wrapped = wrap_prompts([raw for _, raw in rendered], tokenizer)
            counts = prompt_token_counts(wrapped, tokenizer, prefix)
            fits = []
            for (sample, _), (kept, raw), text, count in zip(requests, rendered, wrapped, counts):
                fit = count <= max_prompt_tokens
                # Every probe lies above the largest fitting size known, so a fit is the new best.
                if fit:
                    best[sample] = FittedPrompt(kept, raw, text, count)
                fits.append(fit)
            return fits

        # Exact counts without history: the floor of every prompt, and the impossible case.
        for sample, fit in zip(samples, evaluate([(sample, 0) for sample in samples])):
            if not fit:
                raise ConfigError(
                    f"sample {sample}'s prompt does not fit max_prompt_tokens={max_prompt_tokens} even with no "
                    "history item; raise max_prompt_tokens or use a model with a longer context"
                )
        searching = [sample for sample in samples if items[sample]]
        new_texts = list({text for sample in searching for text in items[sample] if text not in item_tokens})
        item_tokens.update(zip(new_texts, count_plain(new_texts)))
        if searching:
            # Tokens each item adds beyond its own text (index, quotes, separators), measured on one
            # history per chunk; it only steers the first guess.
            shown = items[searching[0]]
            empty, full = count_plain([format_history([], history_format), format_history(shown, history_format)])
            overhead = max(0.0, (full - empty - sum(item_tokens[text] for text in shown)) / len(shown))
        searches: dict[int, _Search] = {}
        requests: list[tuple[int, int]] = []
        for sample in searching:
            room = max_prompt_tokens - best[sample].num_tokens
            guess = 0
            for position in keep_orders[sample]:
                room -= item_tokens[items[sample][position]] + overhead
                if room < 0:
                    break
                guess += 1
            searches[sample] = _Search(low=0, high=len(items[sample]) + 1)
            requests.append((sample, min(max(guess, 1), len(items[sample]))))
        while requests:
            fits = evaluate(requests)
            requests = [
                (sample, following)
                for (sample, probe), fit in zip(requests, fits)
                if (following := searches[sample].next_probe(probe, fit)) is not None
            ]
        for sample in samples:
            results[sample] = best[sample]
        bar.update(len(samples))
    bar.close()
    return results  # type: ignore[return-value]


def fit_prompt_budget(
    domain_template: str,
    profile: dict | None,
    history_titles: Sequence[str],
    history_ratings: Sequence[float | int],
    target_title: str,
    *,
    tokenizer,
    max_prompt_tokens: int,
    rating_format: str,
    history_format: str = "list",
    drop_order: Sequence[int] | None = None,
) -> FittedPrompt:
    """Keep the most history items of one sample whose wrapped prompt fits; see :func:`fit_prompt_budgets`.

    Args:
        domain_template: ``"ml-1m"``, ``"ml-latest"`` or ``"book-crossing"``.
        profile: field -> value for this user (None for ``"ml-latest"``).
        history_titles: shown history titles, in shown order.
        history_ratings: the matching ratings.
        target_title: the target title.
        tokenizer: the model's tokenizer.
        max_prompt_tokens: budget for the wrapped prompt, answer excluded.
        rating_format: ``"int"`` or ``"float1"``.
        history_format: ``"list"`` or ``"lines"``.
        drop_order: positions of the shown history in the order they are dropped (None: oldest first).
    """
    profiles = None if profile is None else {name: [value] for name, value in profile.items()}
    return fit_prompt_budgets(
        domain_template, profiles, [history_titles], [history_ratings], [target_title],
        tokenizer=tokenizer, max_prompt_tokens=max_prompt_tokens, rating_format=rating_format,
        history_format=history_format, drop_orders=None if drop_order is None else [drop_order],
        progress=False,
    )[0]
