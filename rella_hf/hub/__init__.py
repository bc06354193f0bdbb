"""Publish built datasets and trained LoRA adapters on the Hugging Face Hub, and load them back.

- :mod:`~rella_hf.hub.naming`: configuration names (``K5-semantic``) and repository ids.
- :mod:`~rella_hf.hub.datasets`: :func:`export_dataset`, :func:`push_dataset`, :func:`load_published`.
- :mod:`~rella_hf.hub.adapters`: :func:`export_adapter`, :func:`push_adapter`, :func:`load_adapter`.
- :mod:`~rella_hf.hub.cards`: the dataset and model cards (``hub_cards/`` templates).
- :mod:`~rella_hf.hub.upload`: :class:`UploadPlan`, sent with ``HfApi.upload_folder`` (``revision``,
  ``create_pr``, ``parent_commit``, ``delete_patterns``) and token safety.

Tokens are only ever handed to ``huggingface_hub.HfApi(token=...)``, never logged, and every file
is checked not to contain the token before an upload. ``dry_run=True`` returns the
:class:`UploadPlan` (repo, configuration, files) without any network access.
"""

from __future__ import annotations

from .adapters import export_adapter, load_adapter, push_adapter
from .cards import RELLA_CITATION
from .datasets import check_redistribution, export_dataset, load_published, push_dataset
from .naming import BUILD_CONFIG_FILENAME, config_name_for, parse_config_name
from .upload import PlannedFile, UploadPlan

__all__ = [
    "BUILD_CONFIG_FILENAME", "PlannedFile", "RELLA_CITATION", "UploadPlan", "check_redistribution", "config_name_for",
    "export_adapter", "export_dataset", "load_adapter", "load_published", "parse_config_name", "push_adapter",
    "push_dataset",
]
