"""The host kind: one native-bf16 check with its float32 switch, one matmul probe, the facts the demo prints."""

from __future__ import annotations

import pytest
import torch

from rella_hf import hardware, models
from rella_hf.errors import ModelError


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU whose probes report AMX (what this repository's bf16-native hosts have), the switch unset."""
    monkeypatch.delenv(hardware.FORCE_FLOAT32_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)


def test_the_switch_makes_a_bf16_cpu_float32_only_and_the_dtypes_follow(bf16_cpu, monkeypatch):
    from rella_hf.embeddings import bf16_supported
    from rella_hf.training.config import hardware_supports_bf16

    monkeypatch.setattr("rella_hf.training.config._accelerator_present", lambda: False)
    assert hardware.cpu_has_native_bf16() and hardware.host_kind() == "bf16-native"
    assert models.default_dtype("cpu") == torch.bfloat16 and hardware_supports_bf16() and bf16_supported("cpu")
    for value in ("1", "true", "YES"):
        monkeypatch.setenv(hardware.FORCE_FLOAT32_ENV, value)
        assert not hardware.cpu_has_native_bf16() and hardware.host_kind() == "float32-only"
        assert models.default_dtype("cpu") == torch.float32
        assert not hardware_supports_bf16() and not bf16_supported("cpu")
    for value in ("0", "", "no"):
        monkeypatch.setenv(hardware.FORCE_FLOAT32_ENV, value)
        assert hardware.cpu_has_native_bf16()
    assert models.cpu_has_native_bf16 is hardware.cpu_has_native_bf16  # one probe, re-exported


def test_a_cpu_without_bf16_probes_is_float32_only(monkeypatch):
    monkeypatch.delenv(hardware.FORCE_FLOAT32_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert not hardware.cpu_has_native_bf16() and models.default_dtype("cpu") == torch.float32


def test_an_unreadable_switch_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv(hardware.FORCE_FLOAT32_ENV, "maybe")
    with pytest.raises(ModelError, match=r"\$RELLA_HF_FORCE_FLOAT32='maybe' is not understood; set it to 1"):
        hardware.cpu_has_native_bf16()


def test_the_matmul_probe_measures_float32_and_skips_emulated_bf16(monkeypatch):
    rate = hardware.matmul_gflops("float32", tokens=64, in_features=32, out_features=48, seconds=0.01, rounds=1)
    assert rate > 0
    with pytest.raises(ModelError, match="dtype='float16': the matmul probe measures float32 or bfloat16"):
        hardware.matmul_gflops("float16")
    with pytest.raises(ModelError, match="seconds=0, rounds=3: expected seconds > 0"):
        hardware.matmul_gflops("float32", seconds=0)
    monkeypatch.setenv(hardware.FORCE_FLOAT32_ENV, "1")
    rates = {"float32": 100.0, "bfloat16": 400.0}
    monkeypatch.setattr(hardware, "matmul_gflops", lambda dtype, *args, **kwargs: rates[dtype])
    assert hardware.matmul_peak() == {"float32": 100.0, "bfloat16": None}  # emulated: not measured
    assert hardware.matmul_peak(bf16=True) == {"float32": 100.0, "bfloat16": 400.0}


def test_host_facts_say_the_kind_the_switch_and_why_bf16_was_not_measured(monkeypatch, bf16_cpu):
    rates = {"float32": 150.0, "bfloat16": 900.0}
    monkeypatch.setattr(hardware, "matmul_gflops", lambda dtype, *args, **kwargs: rates[dtype])
    native = hardware.probe_host()
    assert (native.kind, native.float32_gflops, native.bf16_gflops) == ("bf16-native", 150.0, 900.0)
    assert "bfloat16 900 GFLOP/s" in native.describe() and "forced" not in native.describe()
    monkeypatch.setenv(hardware.FORCE_FLOAT32_ENV, "1")
    forced = hardware.probe_host()
    line = forced.describe()
    assert forced.kind == "float32-only" and forced.bf16_gflops is None and forced.cores >= 1
    assert line.startswith("float32-only host: ") and "forced by $RELLA_HF_FORCE_FLOAT32=1" in line
    assert "float32 150 GFLOP/s, bfloat16 not measured (emulated on this host)" in line
    assert hardware.HostFacts(**{k: v for k, v in forced.to_dict().items() if k != "kind"}) == forced
    unmeasured = hardware.probe_host(measure=False)
    assert unmeasured.float32_gflops is None and "GFLOP/s" not in unmeasured.describe()
