"""Tests of rella_hf.collaborative_ids (the CoLLM route): the factorisation, the tokens, training, saving, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from rella_hf.collaborative_ids import (  # noqa: E402
    ATTRIBUTE,
    SETTINGS_FILE,
    WEIGHTS_FILE,
    CollaborativeIdTokens,
    add_id_tokens,
    attach_collaborative_ids,
    collaborative_ids_of,
    fit_matrix_factorization,
    id_sentence,
)
from rella_hf.errors import ConfigError, ModelError  # noqa: E402

pytestmark = pytest.mark.usefixtures("models_in_isolated_cache")

USERS, ITEMS = 30, 40


def _planted(n: int, seed: int):
    """(users, items, labels): a like is user taste + item appeal + noise, the structure a factorisation finds."""
    rng = np.random.default_rng(seed)
    taste, appeal = np.random.default_rng(0).normal(size=USERS), np.random.default_rng(1).normal(size=ITEMS)
    users, items = rng.integers(0, USERS, n), rng.integers(0, ITEMS, n)
    labels = (taste[users] + appeal[items] + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    return users, items, labels


def _split(tokenizer, n: int, seed: int, kind: str) -> datasets.Dataset:
    from rella_hf.prompts import answer_completion, wrap_prompts

    users, items, labels = _planted(n, seed)
    raw = [f"[{kind}] The user watched movies {u % 7}, {u % 5}.\nWill the user like movie {i}? Answer yes or no."
           for u, i in zip(users, items)]
    prompts = wrap_prompts(raw, tokenizer)
    return datasets.Dataset.from_dict({
        "sample_id": np.arange(n) + 1000 * seed, "user_id": users, "item_id": items, "label": labels,
        "raw_prompt": raw, "prompt": prompts,
        "completion": [answer_completion(prompt, bool(label)) for prompt, label in zip(prompts, labels)],
    })


@pytest.fixture(scope="module")
def prompt_datasets(smollm2_tokenizer):
    splits = {"train": 400, "validation": 48}
    return {kind: datasets.DatasetDict({name: _split(smollm2_tokenizer, n, seed, kind)
                                        for seed, (name, n) in enumerate(splits.items(), start=1)})
            for kind in ("simple", "sequential")}


@pytest.fixture(autouse=True)
def calibration_top_up_from_the_fixture(monkeypatch, prompt_datasets):
    """The end-of-training calibration tops its rows up from this module's validation split, not a real build."""
    from rella_hf.training.data import build_eval_rows

    def loader(config, data, model=None):
        assert collaborative_ids_of(model) is not None  # the top-up rows must carry the run's tokens
        source = add_id_tokens(prompt_datasets[config.test_type][data.eval_split], collaborative_ids_of(model))
        return lambda size: build_eval_rows(source, size, config.test_type, config.sample_seed)

    monkeypatch.setattr("rella_hf.calibration._validation_rows_loader", loader)


def _config(tmp_path, **overrides):
    from rella_hf.training import ReiTConfig

    settings = dict(output_dir=str(tmp_path / "run"), model_name_or_path="tiny-random-llama", shots=16, pool_size=200,
                    train_type="mixed", test_type="simple", eval_size=24, per_device_train_batch_size=4,
                    per_device_eval_batch_size=8, total_batch_size=8, num_train_epochs=1, logging_steps=1,
                    eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2, compute_eval_loss=False,
                    load_best_model_at_end=True, metric_for_best_model="auc", seed=7, disable_tqdm=True,
                    collaborative_ids=True, id_vector_dim=8, id_fit_epochs=5, learning_rate=1e-3)
    settings.update(overrides)
    return ReiTConfig(**settings)


def _prepared(tmp_path, prompt_datasets, **overrides):
    """A config, its model and tokenizer with the tokens attached, and the run's rows."""
    from rella_hf.training import build_training_data, load_model_for_training, prepare_collaborative_ids

    config = _config(tmp_path, **overrides)
    model, tokenizer = load_model_for_training(config)
    rewritten = prepare_collaborative_ids(config, prompt_datasets, model, tokenizer)
    return config, model, tokenizer, build_training_data(config, rewritten)


# ------------------------------------------------------------------------------------------
# The factorisation
# ------------------------------------------------------------------------------------------


def test_the_factorisation_finds_planted_taste_and_appeal_and_is_seeded():
    users, items, labels = _planted(6000, 3)
    validation = _planted(1000, 4)
    fitted = fit_matrix_factorization(users, items, labels, dim=4, epochs=15, seed=5, validation=validation)
    assert 1 <= fitted.epochs <= 15
    assert fitted.validation_auc > 0.85
    again = fit_matrix_factorization(users, items, labels, dim=4, epochs=15, seed=5)
    np.testing.assert_array_equal(fitted.item_vectors, again.item_vectors)
    # Row 0 is the unknown entry: zeros, and what an unseen id maps to (ids compare as strings: 7 == "7").
    assert fitted.user_vectors.shape == (USERS + 1, 5) and not fitted.user_vectors[0].any()
    assert fitted.user_rows(["7", 7, 12345]).tolist()[:2] == [fitted.user_rows([7])[0]] * 2
    assert fitted.user_rows([12345]).tolist() == [0] and fitted.item_rows([-1]).tolist() == [0]
    # The bias column carries the item's appeal: the best-liked planted item has a larger bias than the worst.
    appeal = np.random.default_rng(1).normal(size=ITEMS)
    rows = fitted.item_rows([int(appeal.argmax()), int(appeal.argmin())])
    assert fitted.item_vectors[rows[0], -1] > fitted.item_vectors[rows[1], -1]


@pytest.mark.parametrize(("arguments", "match"), [
    (dict(user_ids=[1, 2], item_ids=[1], labels=[0, 1]), "equally long"),
    (dict(user_ids=[], item_ids=[], labels=[]), "non-empty"),
    (dict(user_ids=[1], item_ids=[1], labels=[1], dim=0), "id_vector_dim=0"),
    (dict(user_ids=[1], item_ids=[1], labels=[1], holdout_fraction=1.0), "holdout_fraction"),
])
def test_bad_factorisation_inputs_are_refused(arguments, match):
    with pytest.raises(ConfigError, match=match):
        fit_matrix_factorization(**arguments)


def test_the_factorisation_reads_the_train_split_only(tmp_path, prompt_datasets):
    """Changing every validation label changes nothing the tokens carry (their vectors and epoch count come from
    the train split alone); changing train labels does."""
    from rella_hf.training import load_model_for_training, prepare_collaborative_ids

    config = _config(tmp_path)
    def flipped(split):
        return split.map(lambda row: {"label": 1 - row["label"]})

    tables = []
    for flip in ("nothing", "validation", "train"):
        changed = {kind: datasets.DatasetDict({
            "train": flipped(splits["train"]) if flip == "train" else splits["train"],
            "validation": flipped(splits["validation"]) if flip == "validation" else splits["validation"]})
            for kind, splits in prompt_datasets.items()}
        model, tokenizer = load_model_for_training(config)
        prepare_collaborative_ids(config, changed, model, tokenizer)
        tables.append(collaborative_ids_of(model).table.clone())
    assert torch.equal(tables[0], tables[1]) and not torch.equal(tables[0], tables[2])


# ------------------------------------------------------------------------------------------
# Tokens and prompts
# ------------------------------------------------------------------------------------------


def _module(tokenizer, hidden_size: int = 64):
    users, items, labels = _planted(2000, 3)
    fitted = fit_matrix_factorization(users, items, labels, dim=4, epochs=3)
    return CollaborativeIdTokens(fitted, hidden_size, len(tokenizer), "movie")


def test_prompts_gain_one_line_before_the_question_and_keep_their_answer(smollm2_tokenizer, prompt_datasets):
    tokenizer = smollm2_tokenizer.__class__.from_pretrained(smollm2_tokenizer.name_or_path)
    module = _module(tokenizer)
    module.add_tokens(tokenizer)
    split = prompt_datasets["simple"]["validation"]
    rewritten = add_id_tokens(split, module)
    first = rewritten[0]
    user_row = module.factorization.user_rows([split[0]["user_id"]])[0]
    item_row = module.factorization.item_rows([split[0]["item_id"]])[0]
    line = id_sentence(int(user_row), int(item_row), "movie")
    assert first["raw_prompt"].split("\n") == [split[0]["raw_prompt"].split("\n")[0], line,
                                               split[0]["raw_prompt"].split("\n")[1]]
    assert line in first["prompt"] and first["completion"] == split[0]["completion"]
    assert first["prompt"].replace(line + "\n", "") == split[0]["prompt"]
    assert add_id_tokens(rewritten, module)["prompt"] == rewritten["prompt"]  # rewritten rows are left as they are
    # Each token is one id: the user's table row, then the item's after every user row.
    ids = tokenizer(first["prompt"], add_special_tokens=False)["input_ids"]
    added = [token for token in ids if token >= module.first_token_id]
    assert added == [module.first_token_id + user_row, module.first_token_id + module.num_users + item_row]
    # An id the factorisation never saw reads the unknown row.
    unseen = add_id_tokens(split.select([0]).map(lambda row: {"user_id": 10_000}), module)[0]["raw_prompt"]
    assert "<rella_user_0>" in unseen
    with pytest.raises(ConfigError, match="user_id"):
        add_id_tokens(split.remove_columns("user_id"), module)


def test_the_hook_puts_projected_vectors_at_the_tokens_and_leaves_other_rows(tmp_path, smollm2_tokenizer):
    from rella_hf.models import load_model
    from rella_hf.training.tiny import build_tiny_random_llama

    model, tokenizer = load_model(str(build_tiny_random_llama()), dtype="float32")
    plain = model.get_input_embeddings().weight.detach().clone()
    module = _module(tokenizer)
    module.add_tokens(tokenizer)
    attach_collaborative_ids(model, module)
    ids = torch.tensor([[5, module.first_token_id + 2, 9, module.first_token_id + module.num_users + 3]])
    rows = model.get_input_embeddings()(ids)[0]
    with torch.no_grad():
        expected = module(torch.tensor([2, module.num_users + 3]))
    torch.testing.assert_close(rows[[1, 3]], expected)
    torch.testing.assert_close(rows[[0, 2]], plain[[5, 9]])
    # The logits depend on which user the token names.
    other = ids.clone()
    other[0, 1] += 1
    assert not torch.allclose(model(ids).logits[0, -1], model(other).logits[0, -1])
    with pytest.raises(ModelError, match="already carries"):
        attach_collaborative_ids(model, module)
    # A tokenizer whose next free id is not the module's is refused.
    fresh = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    fresh.add_tokens(["<something else>"])
    with pytest.raises(ModelError, match="must start at"):
        module.add_tokens(fresh)


# ------------------------------------------------------------------------------------------
# Training, saving, loading
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("finetuning", ["full", "lora"])
def test_training_moves_the_projector_saves_it_apart_and_reloads_to_the_same_scores(tmp_path, prompt_datasets,
                                                                                     finetuning):
    from safetensors.torch import load_file

    from rella_hf.models import load_tuned_model
    from rella_hf.scoring import CTRScorer
    from rella_hf.training import train_on_data

    top = dict(top_layers=1) if finetuning == "full" else {}
    config, model, tokenizer, data = _prepared(tmp_path, prompt_datasets, finetuning=finetuning, **top)
    module = collaborative_ids_of(model)
    before = {name: value.clone() for name, value in module.state_dict().items()}
    embeddings_before = model.get_input_embeddings().weight.detach().clone()
    assert all("<rella_user_" in prompt for prompt in list(data.train["prompt"]) + list(data.eval["prompt"]))
    result = train_on_data(config, data, model, tokenizer)
    out = result.output_dir

    trained = collaborative_ids_of(model)
    assert torch.equal(trained.table, before["table"])  # the factorisation stays fixed
    assert not torch.equal(trained.projector[0].weight, before["projector.0.weight"])  # the projector trained
    torch.testing.assert_close(model.get_input_embeddings().weight, embeddings_before, rtol=0, atol=0)
    weights = "model.safetensors" if finetuning == "full" else "adapter_model.safetensors"
    assert not any(ATTRIBUTE in key for key in load_file(str(out / weights)))  # the model loads without us
    assert {key for key in load_file(str(out / WEIGHTS_FILE))} == set(before)
    settings = json.loads((out / SETTINGS_FILE).read_text())
    assert settings["first_token_id"] == module.first_token_id and len(settings["user_ids"]) == USERS
    factorization = result.metrics["collaborative_ids"]
    assert factorization["users"] == USERS and 0.5 < factorization["factorization_validation_auc"] <= 1
    # The kept checkpoint's projector is the one saved (best-model restore loads it back too).
    best = Path(result.metrics["best_checkpoint"])
    torch.testing.assert_close(load_file(str(best / WEIGHTS_FILE))["projector.0.weight"],
                               load_file(str(out / WEIGHTS_FILE))["projector.0.weight"])

    prompts = data.eval["prompt"][:6]
    model.eval()
    in_memory = CTRScorer(model, tokenizer, batch_size=3).score(prompts, progress=False)
    reloaded, reloaded_tokenizer = load_tuned_model(out, config.model_name_or_path if finetuning == "full"
                                                    else _tiny_path())
    assert collaborative_ids_of(reloaded) is not None and len(reloaded_tokenizer) == len(tokenizer)
    again = CTRScorer(reloaded, reloaded_tokenizer, batch_size=3).score(prompts, progress=False)
    np.testing.assert_allclose(again, in_memory, atol=2e-3)


def _tiny_path() -> str:
    from rella_hf.training.tiny import build_tiny_random_llama

    return str(build_tiny_random_llama())


def test_the_projector_trains_at_its_own_learning_rate(tmp_path, prompt_datasets):
    from rella_hf.training import build_trainer

    config, model, tokenizer, data = _prepared(tmp_path, prompt_datasets, learning_rate=2e-5, id_projector_lr=3e-3)
    trainer = build_trainer(config, data, model, tokenizer)
    optimizer = trainer.create_optimizer()
    projector = {id(parameter) for parameter in collaborative_ids_of(model).projector.parameters()}
    groups = [{id(parameter) for parameter in group["params"]} for group in optimizer.param_groups]
    own = [group for group, ids in zip(optimizer.param_groups, groups) if ids & projector]
    assert len(own) == 1 and {id(parameter) for parameter in own[0]["params"]} == projector
    assert own[0]["lr"] == 3e-3
    assert all(group["lr"] == 2e-5 for group in optimizer.param_groups if group is not own[0])


def test_a_killed_run_resumes_with_its_projector(tmp_path, prompt_datasets):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from rella_hf.training import train_on_data

    class Killed(Exception):
        pass

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise Killed

    common = dict(shots=16, eval_size=0, eval_strategy="no", load_best_model_at_end=False, save_steps=2)
    whole_config, model, tokenizer, data = _prepared(tmp_path / "whole", prompt_datasets, **common)
    whole = train_on_data(whole_config, data, model, tokenizer)
    config, model, tokenizer, data = _prepared(tmp_path / "cut", prompt_datasets, **common)
    with pytest.raises(Killed):
        train_on_data(config, data, model, tokenizer, callbacks=[KillAfterSave()])
    config, model, tokenizer, data = _prepared(tmp_path / "cut", prompt_datasets, resume=True, **common)
    resumed = train_on_data(config, data, model, tokenizer)
    assert resumed.metrics["resumed_from"].endswith("checkpoint-2")
    expected, got = load_file(str(whole.output_dir / WEIGHTS_FILE)), load_file(str(resumed.output_dir / WEIGHTS_FILE))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=0)


def test_an_exported_adapter_carries_its_tokens_and_load_adapter_attaches_them(tmp_path, prompt_datasets):
    from rella_hf.hub import export_adapter, load_adapter
    from rella_hf.scoring import score_dataset
    from rella_hf.training import train_on_data

    config, model, tokenizer, data = _prepared(tmp_path, prompt_datasets, max_steps=2, eval_size=0,
                                               eval_strategy="no", load_best_model_at_end=False)
    result = train_on_data(config, data, model, tokenizer)
    exported = export_adapter(result.output_dir, tmp_path / "repo", base_model=_tiny_path())
    assert (exported / SETTINGS_FILE).is_file() and (exported / WEIGHTS_FILE).is_file()
    assert "This adapter reads collaborative tokens" in (exported / "README.md").read_text()
    scorer = load_adapter(exported, base_model=_tiny_path(), batch_size=2)
    assert collaborative_ids_of(scorer.model) is not None
    # score_dataset gives a prompt dataset the tokens itself: raw prompts score as the rewritten ones do.
    plain = prompt_datasets["simple"]["validation"].select(range(6))
    from_plain = score_dataset(scorer, plain, progress=False)["score"]
    rewritten = add_id_tokens(plain, collaborative_ids_of(scorer.model))
    np.testing.assert_allclose(from_plain, scorer.score(rewritten["prompt"], progress=False), atol=1e-6)
    assert not np.allclose(from_plain, scorer.score(plain["prompt"], progress=False), atol=1e-4)


def test_collaborative_ids_need_the_model_and_a_positive_projector_rate(tmp_path):
    from rella_hf.training import prepare_training_data

    with pytest.raises(ConfigError, match="id_projector_lr"):
        _config(tmp_path, id_projector_lr=0.0)
    with pytest.raises(ConfigError, match="id_vector_dim"):
        _config(tmp_path, id_vector_dim=0)
    config = _config(tmp_path, dataset="ml-latest-small")
    with pytest.raises(ConfigError, match="needs the model and tokenizer"):
        prepare_training_data(config, None)


def test_run_training_with_collaborative_ids_on_a_built_corpus(tmp_path, monkeypatch):
    """The whole pipeline (build, factorisation, tokens, training, saving) on an ML-1M-format fixture, the tokens'
    line naming the corpus's items ("movie"); the config parses from the command line as `rella-hf train` does."""
    from corpus_fixtures import write_ml1m

    from rella_hf.training import parse_config, run_training

    monkeypatch.setattr("rella_hf.calibration._validation_rows_loader", lambda config, data, model=None: None)
    config = parse_config([
        "--output_dir", str(tmp_path / "run"), "--model_name_or_path", "tiny-random-llama", "--dataset", "ml-1m",
        "--data_dir", str(write_ml1m(tmp_path / "data")), "--K", "3", "--train_type", "simple", "--test_type", "simple",
        "--shots", "4", "--pool_size", "40", "--eval_size", "0", "--eval_strategy", "no", "--max_steps", "1",
        "--total_batch_size", "4", "--per_device_train_batch_size", "4", "--save_strategy", "no",
        "--collaborative_ids", "true", "--id_vector_dim", "4", "--disable_tqdm", "true"])
    assert config.collaborative_ids and config.id_vector_dim == 4
    result = run_training(config)
    settings = json.loads((result.output_dir / SETTINGS_FILE).read_text())
    assert settings["item_noun"] == "movie" and result.metrics["collaborative_ids"]["users"] == len(settings["user_ids"])
    assert (result.output_dir / "adapter_model.safetensors").is_file()
    training_config = json.loads((result.output_dir / "training_config.json").read_text())
    assert training_config["reit"]["collaborative_ids"] is True


def test_frozen_bottom_states_are_never_replayed_across_different_collaborative_tokens(smollm2_tokenizer):
    """The demo's replay of bottom-layer states keys on their weights; tokens change what enters them, so a model
    with tokens (or with other projector weights) never replays another's states."""
    import copy

    from rella_hf.frozen_states import bottom_layers_fingerprint
    from rella_hf.models import load_model
    from rella_hf.training.tiny import build_tiny_random_llama

    plain, tokenizer = load_model(str(build_tiny_random_llama()), dtype="float32")
    with_tokens = copy.deepcopy(plain)
    module = _module(tokenizer)
    attach_collaborative_ids(with_tokens, module)
    retrained = copy.deepcopy(with_tokens)
    with torch.no_grad():
        collaborative_ids_of(retrained).projector[0].bias.add_(0.1)
    prints = [bottom_layers_fingerprint(model, 1) for model in (plain, with_tokens, retrained)]
    assert len(set(prints)) == 3
    assert bottom_layers_fingerprint(copy.deepcopy(with_tokens), 1) == prints[1]
