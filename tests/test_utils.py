"""rella_hf.utils: folders built once (staged, marked complete, locked)."""

from __future__ import annotations

import errno
import json

import pytest

from rella_hf.utils import build_folder_once, unwrap_adapter


def test_a_folder_is_built_once_and_a_failed_build_leaves_nothing_taken_for_complete(tmp_path):
    calls = []

    def build(staged):
        calls.append(staged)
        staged.mkdir()
        (staged / "weights.bin").write_text("complete")
        return {"builds": len(calls)}

    def disk_full(staged):
        staged.mkdir()
        (staged / "weights.bin").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "models" / "thing"
    with pytest.raises(OSError, match="No space left"):
        build_folder_once(target, "done.json", disk_full)
    assert not target.exists()
    assert [path.name for path in target.parent.iterdir()] == [".thing.lock"]  # no scratch folder left
    target.mkdir()  # a leftover of a killed build, without the marker: never trusted
    (target / "weights.bin").write_text("leftover")
    assert build_folder_once(target, "done.json", build) == target
    assert (target / "weights.bin").read_text() == "complete"
    assert json.loads((target / "done.json").read_text()) == {"builds": 1}
    assert build_folder_once(target, "done.json", build) == target and len(calls) == 1


def test_unwrap_adapter_returns_the_model_under_a_peft_wrapper_and_a_plain_model_itself():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from rella_hf.training.tiny import TINY_LLAMA_SHAPE

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, **TINY_LLAMA_SHAPE))
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert unwrap_adapter(wrapped) is model
    assert unwrap_adapter(model) is model
