"""Collaborative tokens in a ReiT run: fit the factorisation, attach it, add the tokens to the prompts, train and save
the projector with the rest (:class:`CollaborativeTokensMixin`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accelerate.logging import get_logger

from ..collaborative_ids import (
    ATTRIBUTE,
    CollaborativeIdTokens,
    add_id_tokens,
    attach_collaborative_ids,
    collaborative_ids_of,
    detached_collaborative_ids,
    fit_matrix_factorization,
)
from ..errors import ConfigError

if TYPE_CHECKING:
    import datasets

    from .config import ReiTConfig

logger = get_logger(__name__)


def item_noun_of(dataset: datasets.Dataset) -> str:
    """The corpus's word for an item ("movie", "book") from a built dataset's settings; "item" when unknown."""
    from ..builders.base import dataset_settings
    from ..corpora import registered_name

    settings = dataset_settings(dataset)
    if settings.get("item_noun"):  # your own files name their items
        return str(settings["item_noun"])
    from ..corpora import CORPORA

    registered = registered_name(str(settings.get("corpus", "")))
    return CORPORA[registered].domain if registered else "item"


def prepare_collaborative_ids(config: ReiTConfig, prompt_datasets: dict[str, datasets.DatasetDict], model,
                              tokenizer) -> dict[str, datasets.DatasetDict]:
    """With ``config.collaborative_ids``: fit the factorisation on the train split, attach it, rewrite the prompts.

    The factorisation reads the train split's (user, item, label) triples only; its AUC on the
    validation split is recorded in the module. The tokens are added to ``tokenizer`` in place and
    the module is attached to ``model`` (a model that already carries one keeps it).

    Args:
        config: the run configuration.
        prompt_datasets: ``{"simple": DatasetDict, "sequential": DatasetDict}`` from
            :func:`~rella_hf.training.data.load_prompt_datasets`.
        model: the base model (before LoRA wrapping).
        tokenizer: its tokenizer.

    Returns:
        The prompt datasets with the collaborative line in every prompt (unchanged without the option).
    """
    if not config.collaborative_ids:
        return prompt_datasets
    module = collaborative_ids_of(model)
    if module is None:
        reference = prompt_datasets.get("simple") or prompt_datasets["sequential"]
        train = reference["train"].select_columns(["user_id", "item_id", "label"])
        validation = None
        if "validation" in reference:
            split = reference["validation"].select_columns(["user_id", "item_id", "label"])
            validation = (split["user_id"], split["item_id"], split["label"])
        factorization = fit_matrix_factorization(
            train["user_id"], train["item_id"], train["label"], dim=config.id_vector_dim, epochs=config.id_fit_epochs,
            seed=config.sample_seed, validation=validation)
        logger.info("Matrix factorisation on %d train samples (%d users, %d items): validation AUC %s.", len(train),
                    len(factorization.user_ids), len(factorization.item_ids), factorization.validation_auc)
        module = CollaborativeIdTokens(factorization, model.get_input_embeddings().embedding_dim, len(tokenizer),
                                       item_noun_of(reference["train"]), seed=config.seed)
        module.add_tokens(tokenizer)
        attach_collaborative_ids(model, module)
    else:
        module.add_tokens(tokenizer)
    return {kind: add_id_tokens(dataset, module) for kind, dataset in prompt_datasets.items()}


class CollaborativeTokensMixin:
    """What a ``Trainer`` needs for collaborative tokens: the projector trains at ``id_projector_lr`` in its own
    optimizer group, is saved beside the model or adapter (never inside it, so those load without rella-hf) and
    is restored with a resumed checkpoint or the best one. Without collaborative tokens it changes nothing.
    """

    def unfreeze_collaborative_projector(self) -> None:
        """Let the projector train (LoRA wrapping and top-layer freezing freeze it with the base weights)."""
        ids = collaborative_ids_of(self.model)
        if ids is not None:
            ids.projector.requires_grad_(True)

    def collaborative_metrics(self) -> dict:
        """``{"collaborative_ids": {...}}`` for ``metrics.json`` (the factorisation's size and validation AUC), or {}."""
        ids = collaborative_ids_of(self.model)
        if ids is None:
            return {}
        factorization = ids.factorization
        return {"collaborative_ids": {"users": len(factorization.user_ids), "items": len(factorization.item_ids),
                                      "factorization_epochs": factorization.epochs,
                                      "factorization_validation_auc": factorization.validation_auc}}

    def create_optimizer(self, model=None):
        """AdamW as the Trainer builds it, with the collaborative-token projector in its own group at ``id_projector_lr``."""
        ids = collaborative_ids_of(self.model)
        rate = getattr(self.args, "id_projector_lr", None)
        if ids is None or rate is None or self.optimizer is not None:
            return super().create_optimizer(model)
        projector = [parameter for parameter in ids.parameters() if parameter.requires_grad]
        ids.requires_grad_(False)
        try:
            optimizer = super().create_optimizer(model)
        finally:
            for parameter in projector:
                parameter.requires_grad_(True)
        optimizer.add_param_group({"params": projector, "lr": rate, "weight_decay": 0.0})
        return optimizer

    def _save(self, output_dir=None, state_dict=None):
        """Save the model or adapter without the collaborative tokens, and them beside it in their own files."""
        marker = ATTRIBUTE + "."
        own_state = None
        if state_dict:  # gathered by the caller (ZeRO-3): our keys go to our file
            own_state = {key.split(marker, 1)[1]: value for key, value in state_dict.items() if marker in key}
            state_dict = {key: value for key, value in state_dict.items() if marker not in key}
        with detached_collaborative_ids(self.model) as ids:
            super()._save(output_dir, state_dict)
        if ids is not None and self.args.should_save:
            ids.save(output_dir if output_dir is not None else self.args.output_dir, own_state or None)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume the model or adapter, then the collaborative-token projector saved with the checkpoint."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_collaborative_ids(resume_from_checkpoint)

    def _load_best_model(self):
        """Restore the best checkpoint, the collaborative-token projector included."""
        super()._load_best_model()
        self._load_collaborative_ids(self.state.best_model_checkpoint)

    def _load_collaborative_ids(self, folder) -> None:
        ids = collaborative_ids_of(self.model)
        if ids is not None and folder and not ids.load_weights(folder):
            raise ConfigError(f"{folder} holds no collaborative_ids.safetensors, but this run trains collaborative "
                              "tokens; resume it from a checkpoint of a run with collaborative_ids=true")
