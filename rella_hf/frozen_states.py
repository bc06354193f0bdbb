"""Scoring the same prompts twice without running the frozen layers twice.

The demo scores one test subset with the base model (zero-shot) and again after fine-tuning the
top decoder layers only. The bottom layers are the same in both models, so their output for a
prompt is too: :class:`FrozenLayerStates` records it while the base model scores and hands it
back when the tuned model scores the same batches, which then run only the layers that changed
(half of them with ``top_layers=15`` on SmolLM2's 30). The recorded tensors are the very values the
layers would compute, so the scores are unchanged; a fingerprint of the bottom layers' weights
guards against replaying them for a model whose bottom layers differ (a LoRA adapter on every
layer, another dtype): such a model is scored whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import weakref
from typing import TYPE_CHECKING

from .utils import unwrap_adapter

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def decoder_layer_list(model):
    """The decoder layers (a ``ModuleList``) under PEFT and task-head wrappers, or None."""
    import torch

    base = unwrap_adapter(model)
    for owner in (getattr(base, "model", None), base, getattr(getattr(base, "model", None), "model", None)):
        layers = getattr(owner, "layers", None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    return None


def bottom_layers_fingerprint(model, count: int) -> str | None:
    """A digest of the first ``count`` decoder layers' parameters (values and dtypes), or None without layers.

    Collaborative tokens (:mod:`rella_hf.collaborative_ids`) change what enters those layers, so their
    tables and projector are part of the digest too.
    """
    from .collaborative_ids import collaborative_ids_of

    layers = decoder_layer_list(model)
    if layers is None or count <= 0 or count > len(layers):
        return None
    digest = hashlib.sha1()
    tokens = collaborative_ids_of(model)
    named = [name_tensor for layer in layers[:count] for name_tensor in layer.named_parameters()]
    named += [(f"collaborative_ids.{name}", tensor) for name, tensor in (tokens.state_dict() if tokens else {}).items()]
    for name, tensor in named:
        tensor = tensor.detach()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.float().cpu().numpy().tobytes())
    return digest.hexdigest()


class FrozenLayerStates:
    """Hidden states after the first ``count`` decoder layers, per scored batch, recorded by one model and replayed
    for another whose first ``count`` layers are identical.

    The first model a scorer runs with it records (and fixes the fingerprint), for every set it scores; another
    model with the same fingerprint replays, any other model is scored whole. Batches are keyed by their token ids,
    so only a batch seen before is replayed.

    Args:
        count: number of bottom decoder layers the two models share (``num_layers - top_layers``).
    """

    def __init__(self, count: int):
        self.count = count
        self.fingerprint: str | None = None
        self.states: dict[bytes, torch.Tensor] = {}
        self._recorder = lambda: None  # a weak reference to the recording model, once there is one
        self._tuple_output = False  # older transformers' decoder layers return (hidden_states, ...)

    def mode_for(self, model) -> str | None:
        """``"record"``, ``"replay"`` or None (this model's bottom layers are not the recorded ones)."""
        fingerprint = bottom_layers_fingerprint(model, self.count)
        if fingerprint is None:
            return None
        if self.fingerprint is None or self._recorder() is model:  # the recording model, maybe on another set
            if fingerprint != self.fingerprint:  # first use, or the recorder's own bottom layers changed
                self.states.clear()
                self.fingerprint = fingerprint
            self._recorder = weakref.ref(model)
            return "record"
        if fingerprint == self.fingerprint:
            logger.info("replaying the recorded output of the bottom %d layers", self.count)
            return "replay"
        logger.info("the model's bottom %d layers differ from the recorded ones: scoring it whole", self.count)
        return None

    @staticmethod
    def key(input_ids: torch.Tensor, offset: int = 0) -> bytes:
        """The key of a batch: its token ids (and where its positions start)."""
        shape = str(tuple(input_ids.shape)).encode()
        return offset.to_bytes(4, "little") + shape + input_ids.cpu().numpy().tobytes()

    @contextlib.contextmanager
    def around(self, model, mode: str | None, key: bytes):
        """Record the bottom layers' output of the forward run inside, or skip those layers and replay it."""
        layers = decoder_layer_list(model)
        if mode is None or layers is None:
            yield
            return
        if mode == "record":
            def keep(module, args, output):
                self._tuple_output = isinstance(output, tuple)
                self.states[key] = (output[0] if self._tuple_output else output).detach()

            handle = layers[self.count - 1].register_forward_hook(keep)
            try:
                yield
            finally:
                handle.remove()
            return
        recorded = self.states.get(key)
        if recorded is None:
            yield
            return
        # accelerate's device-map hooks live on the instance: put back whatever was there.
        originals = [layer.__dict__.get("forward") for layer in layers[: self.count]]

        def first(hidden_states, *args, **kwargs):
            return (recorded,) if self._tuple_output else recorded

        def passthrough(hidden_states, *args, **kwargs):
            return (hidden_states,) if self._tuple_output else hidden_states

        layers[0].forward = first
        for layer in layers[1 : self.count]:
            layer.forward = passthrough
        try:
            yield
        finally:
            for layer, forward in zip(layers[: self.count], originals):
                if forward is None:
                    del layer.forward
                else:
                    layer.forward = forward
