"""Full fine-tuning of the top decoder layers: which layers train, and which parameters are aliases of others."""

from __future__ import annotations

from ..errors import ConfigError
from ..frozen_states import decoder_layer_list
from .config import top_layer_indices


def tied_parameter_names(model) -> set[str]:
    """Names of parameters that share their tensor with another parameter (a tied LM head), all but the first."""
    seen: set[int] = set()
    aliases = set()
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if id(parameter) in seen:
            aliases.add(name)
        seen.add(id(parameter))
    return aliases


def decoder_layers(model) -> list:
    """The decoder blocks of a causal LM (``model.model.layers`` for Llama-style models; see
    :func:`rella_hf.frozen_states.decoder_layer_list`).

    Raises:
        ConfigError: when the model keeps them elsewhere.
    """
    layers = decoder_layer_list(model)
    if layers is None:
        raise ConfigError(f"{type(model).__name__} keeps no decoder layers at model.layers; full fine-tuning "
                          "with top_layers needs them there.")
    return list(layers)


def train_top_decoder_layers(model, top_layers: int | None) -> int:
    """Freeze everything but the last ``top_layers`` decoder layers (all of them when None) and the final norm.

    Embeddings and the LM head stay frozen: they are tied in SmolLM2, and the answer-only loss
    would only move the rows of the answer tokens.

    Args:
        model: the base model (no adapter).
        top_layers: how many of the last decoder layers train; None for all.

    Returns:
        The number of trainable parameters.

    Raises:
        ConfigError: ``top_layers`` exceeds the model's layer count.
    """
    layers = decoder_layers(model)
    trained = top_layer_indices(top_layers, len(layers))
    model.requires_grad_(False)
    for index in trained:
        layers[index].requires_grad_(True)
    norm = getattr(model.model, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
