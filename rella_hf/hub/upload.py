"""Upload mechanics: the :class:`UploadPlan`, sent with ``HfApi.upload_folder``, and token safety.

Tokens are only ever handed to ``huggingface_hub.HfApi(token=...)``, never logged, and every file
is checked not to contain the token before it is sent. ``dry_run=True`` callers get the plan
without any network access.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PublishError

logger = logging.getLogger(__name__)

_HF_TOKEN_VALUE_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")
_SECRET_KEYS = {"token", "hub_token", "hf_token", "auth_token", "access_token", "use_auth_token", "api_key",
                "password", "secret", "hub_private_token"}


@dataclass
class PlannedFile:
    """One file of an upload.

    Args:
        path_in_repo: where it lands in the repository.
        size: its size in bytes.
    """

    path_in_repo: str
    size: int


@dataclass
class UploadPlan:
    """What an upload sends (``dry_run=True`` returns it without sending anything).

    Args:
        repo_id: target repository.
        repo_type: ``"dataset"`` or ``"model"``.
        config_name: the dataset configuration uploaded (None for adapters).
        files: every file added or replaced, README.md included.
        delete_patterns: remote files matching these and not in ``files`` are deleted in the same
            commit (stale shards of the same configuration).
        commit_message: the commit's message.
        private: visibility of a newly created repository (None: the Hub's default).
        revision: the branch the commit goes to (None: the default branch); created when missing.
        create_pr: open a pull request against the default branch instead of committing to it (not with ``revision``).
        parent_commit: the commit the upload was prepared against (the README merge read it); the
            Hub refuses the commit when the branch has moved since, so a concurrent push is never
            silently overwritten.
        dry_run: True when nothing was sent.
        commit_url: URL of the commit once uploaded.
        pr_url: URL of the pull request when ``create_pr`` was set.
    """

    repo_id: str
    repo_type: str
    config_name: str | None
    files: list[PlannedFile]
    delete_patterns: list[str] = field(default_factory=list)
    commit_message: str = ""
    private: bool | None = None
    revision: str | None = None
    create_pr: bool = False
    parent_commit: str | None = None
    dry_run: bool = True
    commit_url: str | None = None
    pr_url: str | None = None

    @property
    def paths_in_repo(self) -> list[str]:
        """The ``path_in_repo`` of every planned file, in upload order."""
        return [planned.path_in_repo for planned in self.files]

    def __str__(self) -> str:
        verb = "would upload" if self.dry_run else "uploaded"
        header = f"{verb} {len(self.files)} files to {self.repo_type} repo {self.repo_id}"
        if self.config_name:
            header += f" (config {self.config_name})"
        if self.revision:
            header += f" on branch {self.revision}"
        if self.create_pr:
            header += " as a pull request" + (f" {self.pr_url}" if self.pr_url else "")
        lines = [header] + [f"  {planned.path_in_repo} ({planned.size} bytes)" for planned in self.files]
        lines += [f"  delete stale: {pattern}" for pattern in self.delete_patterns]
        return "\n".join(lines)


def make_plan(folder: Path, paths_in_repo: list[str], **kwargs) -> UploadPlan:
    """An :class:`UploadPlan` of ``paths_in_repo`` (relative to ``folder``); ``kwargs`` are its other fields."""
    files = [PlannedFile(path, (folder / path).stat().st_size) for path in paths_in_repo]
    return UploadPlan(files=files, **kwargs)


def check_upload_target(revision: str | None, create_pr: bool) -> None:
    """Refuse ``revision`` together with ``create_pr``: ``HfApi.upload_folder`` opens pull requests against the
    default branch only (a pull request ref such as ``refs/pr/3`` is a revision without ``create_pr``).

    Raises:
        ConfigError: for a branch revision with ``create_pr=True``.
    """
    from ..errors import ConfigError

    if create_pr and revision not in (None, "main"):
        raise ConfigError(f"create_pr=True opens the pull request against the default branch, so revision={revision!r} "
                          "cannot be its target; drop revision= (or create_pr= to commit to that branch)")


def prepare_branch(api, plan: UploadPlan) -> None:
    """Create the repository (and the plan's branch) when missing, as ``transformers``' ``push_to_hub`` does."""
    api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True)
    if plan.revision and not plan.revision.startswith("refs/pr/"):
        api.create_branch(plan.repo_id, branch=plan.revision, repo_type=plan.repo_type, exist_ok=True)


def send_plan(api, folder: Path, plan: UploadPlan) -> UploadPlan:
    """Send ``plan`` with ``HfApi.upload_folder``: exactly its files (``allow_patterns``), the remote files
    matching its ``delete_patterns`` and not re-uploaded deleted with them, on ``revision`` (or as a pull
    request), refused by the Hub when the branch has moved past ``parent_commit``.

    ``huggingface_hub`` sends this as one commit; with ``hf_xet`` installed a very large upload may be
    split into several commits, the first carrying the deletions and the ``parent_commit`` check.

    Args:
        api: a ``huggingface_hub.HfApi``.
        folder: the local repository folder the plan's paths are relative to.
        plan: the upload.
    """
    logger.info("Uploading %d files to %s repo %s (stale files matching %s removed)", len(plan.files), plan.repo_type,
                plan.repo_id, ", ".join(plan.delete_patterns) or "nothing")
    options: dict[str, Any] = {"revision": plan.revision, "create_pr": plan.create_pr or None,
                               "parent_commit": plan.parent_commit, "delete_patterns": plan.delete_patterns or None}
    commit = api.upload_folder(repo_id=plan.repo_id, repo_type=plan.repo_type, folder_path=str(folder),
                               allow_patterns=plan.paths_in_repo, commit_message=plan.commit_message,
                               **{key: value for key, value in options.items() if value is not None})
    plan.dry_run = False
    plan.commit_url = getattr(commit, "commit_url", None)
    plan.pr_url = getattr(commit, "pr_url", None)
    return plan


def redact(value: Any) -> Any:
    """Copy of a config with secrets blanked: secret-named keys and any ``hf_...`` token-shaped string."""
    if isinstance(value, dict):
        return {key: ("<redacted>" if str(key).lower() in _SECRET_KEYS and item not in (None, "", False, True)
                      else redact(item)) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and _HF_TOKEN_VALUE_RE.search(value):
        return _HF_TOKEN_VALUE_RE.sub("<redacted>", value)
    return value


def _file_contains(path: Path, needle: bytes, block: int = 1 << 22) -> bool:
    """Whether ``needle`` occurs in the file, read in blocks that overlap by ``len(needle) - 1`` bytes."""
    overlap = len(needle) - 1
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def resolve_token(token: str | None, dry_run: bool) -> str | None:
    """The token an upload would use, to check files against it (``HF_TOKEN``, then the stored login)."""
    if token:
        return token
    if dry_run and os.environ.get("HF_OIDC_RESOURCE"):  # OIDC exchanges a token over the network
        return os.environ.get("HF_TOKEN") or None
    from huggingface_hub import get_token

    return get_token()


def assert_token_absent(folder: Path, paths_in_repo: list[str], token: str | None) -> None:
    """Raise when any file about to be uploaded contains the token (the token itself is never shown)."""
    if not token:
        return
    needle = token.encode("utf-8")
    for path_in_repo in paths_in_repo:
        if _file_contains(folder / path_in_repo, needle):
            raise PublishError(
                f"{path_in_repo} contains your Hugging Face token; remove it from that file (or its source) "
                "before publishing"
            )


__all__ = ["PlannedFile", "UploadPlan", "assert_token_absent", "check_upload_target", "make_plan", "prepare_branch",
           "redact", "resolve_token", "send_plan"]
