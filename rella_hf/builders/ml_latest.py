"""ReLLa prompt dataset builders of the MovieLens CSV family (ml-25m, ml-20m, ml-32m, ml-latest, ml-latest-small)."""

from .base import ReLLaBuilder


class MovieLens25MBuilder(ReLLaBuilder):
    """MovieLens-25M prompts (no user profile; half-star ratings)."""

    CORPUS = "ml-25m"


class MovieLens20MBuilder(ReLLaBuilder):
    """MovieLens-20M prompts."""

    CORPUS = "ml-20m"


class MovieLens32MBuilder(ReLLaBuilder):
    """MovieLens-32M prompts."""

    CORPUS = "ml-32m"


class MovieLensLatestBuilder(ReLLaBuilder):
    """MovieLens "latest" (full) prompts."""

    CORPUS = "ml-latest"


class MovieLensLatestSmallBuilder(ReLLaBuilder):
    """ml-latest-small prompts (the corpus bundled with rella-hf)."""

    CORPUS = "ml-latest-small"
