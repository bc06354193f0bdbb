"""ReLLa prompt dataset builder of Book-Crossing."""

from .base import ReLLaBuilder


class BookCrossingBuilder(ReLLaBuilder):
    """Book-Crossing prompts: user location and age + K rated books (train / test only)."""

    CORPUS = "BookCrossing"
