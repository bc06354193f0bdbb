"""The texts of corpora read from your own files (:mod:`rella_hf.corpora.interactions`): ours, in ReLLa's style.

The registered corpora use the paper's prompt templates (:mod:`rella_hf.prompts`) and item sentences
(:mod:`rella_hf.embeddings`); a corpus built from your log names its items with the nouns and the
verb of its config, and describes them by the columns it names.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError

#: Templates of corpora read from the user's files (:mod:`rella_hf.corpora.interactions`), by label kind; ours,
#: not the paper's. ``{noun}``, ``{nouns}`` and ``{verb}`` come from the corpus config; with noun "movie" and
#: verb "watched" the "rated" one is the paper's ``"ml-latest"`` template word for word.
GENERIC_TEMPLATES: dict[str, str] = {
    "rated": (
        "The user {verb} the following {nouns} in the past, and rated them:\n"
        "{{history}}\n"
        "Based on the {nouns} the user has {verb}, deduce if the user will like the {noun} ***{{title}}***.\n"
        "Note that more stars the user rated the {noun}, the user liked the {noun} more.\n"
        "You should ONLY tell me yes or no."
    ),
    "liked": (
        "The user {verb} the following {nouns} in the past, and each is marked liked or not liked:\n"
        "{{history}}\n"
        "Based on the {nouns} the user has {verb}, deduce if the user will like the {noun} ***{{title}}***.\n"
        "You should ONLY tell me yes or no."
    ),
}


def generic_template(noun: str, nouns: str, verb: str, kind: str = "rated") -> str:
    """The prompt template text of a corpus read from the user's files, its nouns and verb filled in.

    Args:
        noun, nouns: what an item is called ("product", "products").
        verb: what the user did, in the past tense ("bought", "watched", "interacted with").
        kind: ``"rated"`` (ratings shown as stars) or ``"liked"`` (a binary label column).
    """
    if kind not in GENERIC_TEMPLATES:
        raise ConfigError(f"kind={kind!r} is not supported; expected one of {', '.join(map(repr, GENERIC_TEMPLATES))}")
    escape = lambda text: str(text).replace("{", "{{").replace("}", "}}")  # noqa: E731
    return GENERIC_TEMPLATES[kind].format(noun=escape(noun), nouns=escape(nouns), verb=escape(verb))


def prompt_template_for(corpus) -> str:
    """The template argument of :func:`render_prompts_flat` for ``corpus``: its template name, or for a corpus
    read from the user's files (``prompt_template == "generic"``) the template text with its nouns."""
    if corpus.prompt_template == "generic":
        return generic_template(**corpus.prompt_nouns)
    return corpus.prompt_template


def generic_item_template(noun: str, fields: Sequence[str]) -> str:
    """The item sentence of a corpus read from the user's files (ours, in ReLLa's style):
    ``"Here is a product. Its title is {title}. Its brand is {brand}."`` (underscores in names read as spaces)."""
    escape = lambda text: str(text).replace("{", "{{").replace("}", "}}")  # noqa: E731
    sentences = [f"Its {escape(field.replace('_', ' '))} is {{{field}}}." for field in fields]
    return " ".join([f"Here is a {escape(noun)}.", *sentences])
