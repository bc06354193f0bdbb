"""ReLLa prompt dataset builder of MovieLens-100K (ML-1M protocol and template)."""

from .base import ReLLaBuilder


class MovieLens100KBuilder(ReLLaBuilder):
    """MovieLens-100K prompts, rendered with the ML-1M template."""

    CORPUS = "ml-100k"
