"""The dataset options are declared once and reach the builder config, the CLI, the training config and the demo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from rella_hf.errors import ConfigError
from rella_hf.options import BuildOptions, ReLLaDataArguments

REPO = Path(__file__).resolve().parents[1]
BUILD_FIELDS = [item.name for item in dataclasses.fields(BuildOptions)]
NEW_IN_YAML = {"pca_dim": 64, "pooling": "last", "order": "similarity", "history_format": "lines"}


def test_every_dataclass_takes_its_dataset_options_from_one_declaration():
    from rella_hf.builders import ReLLaConfig
    from rella_hf.demo import DemoConfig
    from rella_hf.training import ReiTConfig

    declared = {item.name: item for item in dataclasses.fields(BuildOptions)}
    for cls in (ReLLaConfig, ReLLaDataArguments, ReiTConfig, DemoConfig):
        fields = {item.name: item for item in dataclasses.fields(cls)}
        assert set(declared) <= set(fields), cls
        for name in declared:
            # Training and demo default to the model's own template ("auto"); the demo takes K from the recipe of
            # its host kind (rella_hf.demo.RECIPES), so its own K defaults to None.
            if name != "chat_model" and (cls, name) != (DemoConfig, "K"):
                assert fields[name].default == declared[name].default, (cls, name)
                assert fields[name].metadata == declared[name].metadata, (cls, name)


@pytest.mark.parametrize("name", sorted(path.name for path in (REPO / "trainer_configs").glob("*.yaml")))
def test_shipped_yaml_parses_with_the_dataset_options(name, tmp_path, monkeypatch):
    """Each shipped YAML, with pca_dim / pooling / order / history_format added, parses into ReiTConfig."""
    from rella_hf.training import parse_config

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    settings = yaml.safe_load((REPO / "trainer_configs" / name).read_text())
    written = tmp_path / name
    written.write_text(yaml.safe_dump({**settings, **NEW_IN_YAML}))
    config = parse_config(["--config", str(written), "--output_dir", str(tmp_path / "out"), "--bf16", "false",
                           "--per_device_train_batch_size", "4"])
    assert {key: getattr(config, key) for key in NEW_IN_YAML} == NEW_IN_YAML
    assert (config.dataset, config.K) == (settings["dataset"], settings["K"])
    assert config.reit_settings()["pca_dim"] == 64 and "retrieval" not in config.reit_settings()
    overridden = parse_config(["--config", str(REPO / "trainer_configs" / name), "--output_dir", str(tmp_path / "o"),
                               "--bf16", "false", "--per_device_train_batch_size", "4", "--pooling", "last"])
    assert overridden.pooling == "last" and overridden.pca_dim is None


def test_bad_option_values_name_the_option():
    with pytest.raises(ConfigError, match="pooling='max' is not one of average, last"):
        ReLLaDataArguments(pooling="max")
    with pytest.raises(ConfigError, match="order='similarity' needs retrieval='semantic'"):
        ReLLaDataArguments(order="similarity")
    from rella_hf.demo import DemoConfig

    assert DemoConfig(order="similarity").order == "similarity"  # the demo builds both kinds; order is SUBR's
    assert ReLLaDataArguments(chat_model="none").chat_model is None


def test_cli_lists_every_dataset_option(capsys):
    from rella_hf.cli import main

    for command in ("build", "score", "push"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(f"--{name}" in out for name in BUILD_FIELDS), command


def test_train_flags_split_between_accelerate_and_the_training():
    from rella_hf.commands import _split_accelerate_flags

    launcher, accelerate_flags, rest = _split_accelerate_flags(
        ["--config", "c.yaml", "--accelerate_config", "multi_cpu", "--num_processes", "2", "--shots", "8",
         "--mixed_precision=no", "--gradient_accumulation_steps", "4", "--pca_dim", "16"])
    assert launcher == "multi_cpu"
    assert accelerate_flags == ["--num_processes", "2", "--mixed_precision=no"]
    # every other flag (a training field shared with accelerate's names included) reaches the training
    assert rest == ["--config", "c.yaml", "--shots", "8", "--gradient_accumulation_steps", "4", "--pca_dim", "16"]


def test_rella_hf_train_launches_through_accelerate_launch_command(monkeypatch, tmp_path):
    """--accelerate_config and accelerate's own flags reach launch_command; the rest reaches the training."""
    import accelerate.commands.launch as launch

    from rella_hf.cli import main

    seen = []
    monkeypatch.setattr(launch, "launch_command", lambda args: seen.append(args))
    config = str(REPO / "trainer_configs" / "smoke-cpu.yaml")
    assert main(["train", "--config", config, "--accelerate_config", "multi_cpu", "--num_processes", "2",
                 "--shots", "8", "--pca_dim", "16"]) == 0
    (args,) = seen
    assert args.config_file.endswith("accelerate_configs/multi_cpu.yaml") and args.num_processes == 2
    assert args.module and args.training_script == "rella_hf.cli"
    assert args.training_script_args == ["train", "--config", config, "--shots", "8", "--pca_dim", "16"]


def test_published_loads_pass_revision_token_and_streaming_through(monkeypatch):
    """A Hub repo id goes to datasets.load_dataset with revision, token and streaming; options are compared."""
    import datasets
    import huggingface_hub

    import rella_hf

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or "loaded")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: (_ for _ in ()).throw(
        huggingface_hub.errors.LocalEntryNotFoundError("offline")))
    assert rella_hf.load_dataset("my-org/rella-ml", K=5, retrieval="semantic", revision="v2", token="hf_x",
                                 streaming=True, split="test") == "loaded"
    assert calls == [(("my-org/rella-ml", "K5-semantic"),
                      {"split": "test", "revision": "v2", "token": "hf_x", "streaming": True})]
    # Options are checked against the stored build settings; when none can be read, the load goes on with a warning.
    assert rella_hf.load_dataset("my-org/rella-ml", K=5, retrieval="recent", history_format="list") == "loaded"
    with pytest.raises(ConfigError, match="revision and token apply to published datasets"):
        rella_hf.load_dataset("ml-latest-small", revision="v2")
