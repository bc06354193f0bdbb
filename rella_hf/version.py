"""The rella-hf version (its own module, so any module can read it without importing the package's entry points)."""

__version__ = "0.1.0"
