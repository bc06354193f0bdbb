"""ReLLa prompt dataset builder of MovieLens-1M."""

from .base import ReLLaBuilder


class MovieLens1MBuilder(ReLLaBuilder):
    """MovieLens-1M prompts: user profile (gender, job, age) + K rated movies."""

    CORPUS = "ml-1m"
