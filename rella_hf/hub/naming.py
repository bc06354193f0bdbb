"""Names on the Hub: dataset configuration names, repository ids, and the files of an exported repo."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEFAULT_ORDER = "chronological"
DEFAULT_MAX_SHARD_SIZE = "500MB"
#: Per-configuration sidecar holding the corpus and build settings (not a data file).
BUILD_CONFIG_FILENAME = "rella_build_config.json"
README_NAME = "README.md"

_CONFIG_NAME_RE = re.compile(r"^K(?P<K>[1-9][0-9]*)-(?P<retrieval>[a-z0-9_]+)(?:-(?P<order>[a-z0-9_]+))?$")
_ANY_CONFIG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SLUG_RE = re.compile(r"^[a-z0-9_]+$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


def config_name_for(K: int, retrieval: str, order: str = DEFAULT_ORDER) -> str:
    """Return the Hub configuration name of a build: ``K5-semantic``, ``K30-recent``, ``K5-semantic-similarity``.

    The order suffix appears only when ``order`` is not the default (``"chronological"``).

    Args:
        K: number of history behaviours in each prompt (positive).
        retrieval: retrieval method, e.g. ``"semantic"`` or ``"recent"`` (lowercase letters, digits, ``_``).
        order: order of the retrieved behaviours in the prompt, e.g. ``"chronological"`` or ``"similarity"``.

    Raises:
        ConfigError: for a non-positive K or a retrieval/order that is not a lowercase slug.
    """
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ConfigError(f"K={K!r} is not a positive integer; pass the number of history behaviours per prompt, e.g. K=5")
    for name, value in (("retrieval", retrieval), ("order", order)):
        if not isinstance(value, str) or not SLUG_RE.match(value):
            raise ConfigError(
                f"{name}={value!r} cannot be part of a configuration name; expected lowercase letters, digits "
                f"or '_' (e.g. 'semantic', 'recent', 'chronological')"
            )
    name = f"K{K}-{retrieval}"
    return name if order == DEFAULT_ORDER else f"{name}-{order}"


def parse_config_name(config_name: str) -> dict[str, Any]:
    """Inverse of :func:`config_name_for`: ``"K5-semantic"`` -> ``{"K": 5, "retrieval": "semantic", "order": "chronological"}``.

    Args:
        config_name: a name produced by :func:`config_name_for`.

    Raises:
        ConfigError: when the name does not have the ``K<k>-<retrieval>[-<order>]`` shape.
    """
    match = _CONFIG_NAME_RE.match(config_name or "")
    if match is None:
        raise ConfigError(
            f"config_name={config_name!r} does not look like 'K<k>-<retrieval>[-<order>]' (e.g. 'K5-semantic'); "
            "build it with rella_hf.hub.config_name_for(K, retrieval, order)"
        )
    return {"K": int(match["K"]), "retrieval": match["retrieval"], "order": match["order"] or DEFAULT_ORDER}


def resolve_config_name(config_name: str | None, build_config: dict) -> str:
    """The configuration name of an export: ``config_name`` checked against ``build_config``, or derived from it.

    Raises:
        ConfigError: when neither gives a name, the name is malformed, or the two disagree.
    """
    settings = {key: build_config[key] for key in ("K", "retrieval", "order") if build_config.get(key) is not None}
    if config_name is None:
        if "K" not in settings or "retrieval" not in settings:
            raise ConfigError(
                "config_name was not given and build_config lacks K or retrieval; pass config_name=config_name_for(K, retrieval)"
            )
        return config_name_for(settings["K"], settings["retrieval"], settings.get("order", DEFAULT_ORDER))
    if not isinstance(config_name, str) or not _ANY_CONFIG_NAME_RE.match(config_name):
        raise ConfigError(f"config_name={config_name!r} is not a valid configuration name; use config_name_for(K, "
                          f"retrieval, order)")
    if "K" in settings and "retrieval" in settings:
        expected = config_name_for(settings["K"], settings["retrieval"], settings.get("order", DEFAULT_ORDER))
        if expected != config_name:
            raise ConfigError(
                f"config_name={config_name!r} disagrees with build_config (K={settings['K']}, retrieval="
                f"{settings['retrieval']!r}, order={settings.get('order', DEFAULT_ORDER)!r} -> {expected!r}); "
                "drop config_name to derive it or fix build_config"
            )
    return config_name


def check_repo_id(repo_id: str) -> None:
    """Raise :class:`ConfigError` unless ``repo_id`` has the Hub's ``namespace/name`` shape."""
    if not isinstance(repo_id, str) or not _REPO_ID_RE.match(repo_id):
        raise ConfigError(f"repo_id={repo_id!r} is not a Hub repository id; expected 'namespace/name', e.g. "
                          f"'my-org/rella-ml-latest-small'")


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a Hub repository id rather than an existing local path."""
    return bool(_REPO_ID_RE.match(name)) and not name.startswith((".", "~")) and not Path(name).expanduser().exists()


__all__ = [
    "BUILD_CONFIG_FILENAME", "DEFAULT_MAX_SHARD_SIZE", "DEFAULT_ORDER", "README_NAME", "check_repo_id",
    "config_name_for", "looks_like_hub_id", "parse_config_name", "resolve_config_name",
]
