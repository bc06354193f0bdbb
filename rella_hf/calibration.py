"""Calibrated CTR probabilities: a monotone map from the yes-vs-no log-odds to a probability.

The paper's score ``P(yes) / (P(yes) + P(no))`` ranks well but its level is set by a
model-specific yes/no bias and squeezed towards it (a tuned SmolLM2 puts every prediction between
0.58 and 0.72), so its LogLoss and accuracy at 0.5 say little. A :class:`Calibration` maps the
log-odds ``z = log P(yes) - log P(no) = logit(score)`` to a probability:

- ``platt`` (default): ``sigmoid(a * z + b)``, a logistic regression on ``z`` (scikit-learn);
- ``temperature``: ``sigmoid(z / T)``, one parameter (it rescales but cannot move the 0.5 point);
- ``isotonic``: a non-decreasing step function of ``z`` (scikit-learn's ``IsotonicRegression``);
  it may tie scores, so AUC can change a little;
- ``content_free``: ``sigmoid(z - bias)``, the label-free correction of Zhao et al. (ICML 2021,
  "Calibrate Before Use"): ``bias`` is the log-odds the model gives prompts whose history and
  target are replaced by a neutral placeholder (:func:`content_free_prompts`).

Fits use **validation samples only** (never the test split) and are deterministic. The raw score
is never replaced: scorers and score files carry the calibrated probability beside it
(``score_calibrated``). A calibration is saved beside the weights it belongs to as
``calibration.json`` with a fingerprint of those weights (:func:`model_fingerprint`);
:func:`load_calibration` refuses a file whose fingerprint differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import MetricError, RellaError

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: The end-of-training validation scores (label, raw score per line): a calibration can be refitted without the weights.
VALIDATION_SCORES_FILE = "validation_scores.jsonl"
FORMAT = "rella-hf-calibration"
FORMAT_VERSION = 1
METHODS = ("platt", "temperature", "isotonic", "content_free")
#: Methods fitted on labelled samples (``content_free`` needs no labels).
LABELLED_METHODS = ("platt", "temperature", "isotonic")
DEFAULT_METHOD = "platt"

#: Smallest fitting set per method: (samples, samples of the rarer class). Platt's two parameters
#: need about ten events of the rarer class per parameter to be stable (Peduzzi et al. 1996 rule of
#: thumb, halved because a calibration map has no collinear features); a step function needs several
#: samples per step. The demo's 100 validation samples (about half positive) pass for Platt.
MIN_SAMPLES = {"platt": (50, 10), "temperature": (30, 5), "isotonic": (200, 30)}
#: Validation rows scored at the end of ReiT when the run's own subset is below the minimum.
END_OF_TRAINING_ROWS = 200
#: Scores are clipped this far inside (0, 1) before the logit, so a saturated P(yes) stays finite.
_LOGIT_EPS = 1e-15
#: Weight files a fingerprint reads, in order: a LoRA adapter, a full model (single or sharded).
_WEIGHT_PATTERNS = ("adapter_model.safetensors", "model.safetensors", "model-*-of-*.safetensors")
#: Neutral inputs for the content-free correction (Zhao et al. average over several).
CONTENT_FREE_PLACEHOLDERS = ("N/A", "[MASK]", "")


class CalibrationError(MetricError):
    """A calibration cannot be fitted, read or applied (bad scores, too few samples, a foreign model)."""


# --------------------------------------------------------------------------------------------
# Scores and log-odds
# --------------------------------------------------------------------------------------------


def check_scores(scores, what: str = "scores") -> np.ndarray:
    """Scores as a float64 vector, refusing NaN and values outside [0, 1] in one line.

    Args:
        scores: P(yes) / (P(yes) + P(no)) per sample.
        what: how the message names them.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise CalibrationError(f"{what} have shape {values.shape}, expected one score per sample (1-D).")
    bad_nan = int(np.isnan(values).sum())
    if bad_nan:
        raise CalibrationError(f"{what} hold {bad_nan} NaN value(s); rescore those samples before calibrating.")
    outside = (values < 0) | (values > 1)
    if outside.any():
        raise CalibrationError(
            f"{what} hold {int(outside.sum())} value(s) outside [0, 1] (e.g. {values[outside][0]!r}); pass "
            "P(yes) / (P(yes) + P(no)), not logits."
        )
    return values


def _check_labels(labels, count: int) -> np.ndarray:
    values = np.asarray(labels)
    if values.shape != (count,):
        raise CalibrationError(f"labels have shape {values.shape}, expected ({count},) to match the scores.")
    if values.dtype != bool and (not np.issubdtype(values.dtype, np.number) or not np.isin(values, (0, 1)).all()):
        raise CalibrationError("labels must be 0 or 1 (click / no click); binarize them first.")
    return values.astype(np.int64)


def log_odds(scores) -> np.ndarray:
    """``z = logit(score) = log P(yes) - log P(no)``, the input of every calibration map.

    Args:
        scores: P(yes) / (P(yes) + P(no)) per sample (checked: finite, in [0, 1]).
    """
    from scipy.special import logit

    return logit(np.clip(check_scores(scores), _LOGIT_EPS, 1.0 - _LOGIT_EPS))


# --------------------------------------------------------------------------------------------
# The calibration object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A fitted monotone map from the raw CTR score to a calibrated probability.

    Args:
        method: one of :data:`METHODS`.
        parameters: ``{"a", "b"}`` (platt), ``{"temperature"}``, ``{"z", "p"}`` (isotonic knots:
            log-odds and probabilities, interpolated linearly, flat outside) or ``{"bias"}`` (content_free).
        n: samples it was fitted on (content-free prompts for ``content_free``).
        positive_rate: share of positives among them (None for ``content_free``: no labels).
        fingerprint: :func:`model_fingerprint` of the model it belongs to.
        model: a readable name of that model (base model and adapter).
        fitted_on: where the fitting samples came from (e.g. ``"validation"``).
    """

    method: str
    parameters: dict
    n: int
    positive_rate: float | None
    fingerprint: str
    model: str = ""
    fitted_on: str = "validation"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise CalibrationError(f"method={self.method!r} is not one of {', '.join(METHODS)}.")
        needed = {"platt": {"a", "b"}, "temperature": {"temperature"}, "isotonic": {"z", "p"},
                  "content_free": {"bias"}}[self.method]
        if set(self.parameters) != needed:
            raise CalibrationError(
                f"{self.method} calibration parameters are {sorted(self.parameters)}, expected {sorted(needed)}.")
        values = np.concatenate([np.ravel(np.asarray(value, dtype=np.float64)) for value in self.parameters.values()])
        if not np.isfinite(values).all():
            raise CalibrationError(f"{self.method} calibration parameters hold NaN or infinite values.")
        if self.method == "platt" and self.parameters["a"] <= 0:
            raise CalibrationError(f"Platt slope a={self.parameters['a']} must be positive (a monotone increasing map).")
        if self.method == "temperature" and self.parameters["temperature"] <= 0:
            raise CalibrationError(f"temperature={self.parameters['temperature']} must be positive.")
        if self.method == "isotonic":
            knots_z, knots_p = np.asarray(self.parameters["z"]), np.asarray(self.parameters["p"])
            if knots_z.shape != knots_p.shape or knots_z.ndim != 1 or len(knots_z) < 1:
                raise CalibrationError("isotonic knots z and p must be two 1-D lists of the same, non-zero length.")
            if (np.diff(knots_z) < 0).any() or (np.diff(knots_p) < 0).any() or knots_p.min() < 0 or knots_p.max() > 1:
                raise CalibrationError("isotonic knots must be non-decreasing, with probabilities in [0, 1].")

    def transform(self, scores) -> np.ndarray:
        """Calibrated probabilities of raw scores (the raw scores are not modified).

        Args:
            scores: P(yes) / (P(yes) + P(no)) per sample.
        """
        from scipy.special import expit

        z = log_odds(scores)
        parameters = self.parameters
        if self.method == "platt":
            return expit(parameters["a"] * z + parameters["b"])
        if self.method == "temperature":
            return expit(z / parameters["temperature"])
        if self.method == "content_free":
            return expit(z - parameters["bias"])
        return np.interp(z, np.asarray(parameters["z"], dtype=np.float64), np.asarray(parameters["p"], dtype=np.float64))

    def to_dict(self) -> dict:
        """The JSON content of ``calibration.json``."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "input": "z = log P(yes) - log P(no) = logit(score)",
                **asdict(self)}

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``calibration.json`` into ``folder`` (atomically) and return its path."""
        from .utils import atomic_write_text

        return atomic_write_text(Path(folder) / CALIBRATION_FILE, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_dict(cls, payload, source: str = "calibration") -> Calibration:
        """Rebuild a calibration from :meth:`to_dict` output, refusing anything else in one line."""
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CalibrationError(f"{source} is not a rella-hf calibration (no \"format\": \"{FORMAT}\"); "
                                   "fit one with `rella-hf calibrate`.")
        if payload.get("version") != FORMAT_VERSION:
            raise CalibrationError(f"{source} has calibration format version {payload.get('version')!r}, "
                                   f"this rella-hf reads {FORMAT_VERSION}; refit it with `rella-hf calibrate`.")
        names = ("method", "parameters", "n", "positive_rate", "fingerprint", "model", "fitted_on", "extra")
        missing = [name for name in names[:5] if name not in payload]
        if missing or not isinstance(payload.get("parameters"), dict):
            raise CalibrationError(f"{source} lacks {', '.join(missing) or 'a parameters mapping'}; "
                                   "refit it with `rella-hf calibrate`.")
        return cls(**{name: payload[name] for name in names if name in payload})


def load_calibration(folder_or_file: str | os.PathLike, expected_fingerprint: str | None = None) -> Calibration | None:
    """Read ``calibration.json`` (a folder's, or the file itself); None when a folder has none.

    Args:
        folder_or_file: a model / adapter folder or the JSON file.
        expected_fingerprint: :func:`model_fingerprint` of the model it will be applied to; a
            calibration fitted for another model is refused.

    Raises:
        CalibrationError: for a file that does not parse, or one that belongs to another model.
    """
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / CALIBRATION_FILE
        if not path.is_file():
            return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CalibrationError(f"{path} does not parse as JSON ({str(error).splitlines()[0][:80]}); "
                               "delete it or refit with `rella-hf calibrate`.") from None
    calibration = Calibration.from_dict(payload, str(path))
    if expected_fingerprint is not None and calibration.fingerprint != expected_fingerprint:
        raise CalibrationError(
            f"{path} was fitted for another model ({calibration.model or 'unnamed'}, fingerprint "
            f"{calibration.fingerprint[:19]}) than the one loaded ({expected_fingerprint[:19]}); "
            "refit it with `rella-hf calibrate` for this model.")
    return calibration


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------


def _sha256_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The weight files a fingerprint reads in ``folder``: the adapter's, else the full model's (all shards)."""
    folder = Path(folder)
    for pattern in _WEIGHT_PATTERNS:
        found = sorted(folder.glob(pattern))
        if found:
            return found
    return []


def model_fingerprint(model: str | os.PathLike, weights: Sequence[str | os.PathLike] | None = None) -> str:
    """Identity of the model a calibration belongs to.

    The SHA-256 of the trained weights (``adapter_model.safetensors``, else ``model.safetensors``
    or its shards), so a folder exported for the Hub, which copies them byte for byte, keeps the
    fingerprint; for a model without such files (an untuned base model named by Hub id or alias)
    its name.

    Args:
        model: a model or adapter folder, a Hub id or an alias.
        weights: weight files to hash instead of looking in ``model`` (e.g. downloaded from the Hub).
    """
    files = [Path(path) for path in weights] if weights else (weight_files(model) if Path(model).is_dir() else [])
    if files:
        return _sha256_files(files)
    return f"name:{model}"


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def check_fitting_set(labels, scores, method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(labels, scores)`` of a fitting set, or a one-line :class:`CalibrationError`.

    Refuses NaN / out-of-range scores, a single class, and fewer samples than
    :data:`MIN_SAMPLES` asks for ``method``.
    """
    if method not in LABELLED_METHODS:
        raise CalibrationError(f"method={method!r} is not one of {', '.join(LABELLED_METHODS)} (labelled fits).")
    p = check_scores(scores, "validation scores")
    y = _check_labels(labels, len(p))
    positives = int(y.sum())
    if positives in (0, len(y)):
        raise CalibrationError(
            f"the {len(y)} validation samples are all {'positive' if positives else 'negative'}: one class cannot "
            "calibrate; use a validation split holding clicks and non-clicks.")
    least, rare = MIN_SAMPLES[method]
    minority = min(positives, len(y) - positives)
    if len(y) < least or minority < rare:
        raise CalibrationError(
            f"{method} needs at least {least} validation samples with {rare} of each class, got {len(y)} with "
            f"{minority} of the rarer class; score more validation samples (e.g. --limit {max(least, 4 * rare)}).")
    return y, p


def fit_calibration(labels, scores, method: str = DEFAULT_METHOD, *, fingerprint: str, model: str = "",
                    fitted_on: str = "validation") -> Calibration:
    """Fit a calibration on labelled **validation** scores (never the test split's).

    Args:
        labels: 0/1 labels of the fitting samples.
        scores: their raw P(yes) / (P(yes) + P(no)).
        method: ``"platt"`` (default), ``"temperature"`` or ``"isotonic"``.
        fingerprint: :func:`model_fingerprint` of the model that produced the scores.
        model: readable name of that model.
        fitted_on: where the samples came from (recorded).

    Raises:
        CalibrationError: for bad scores, a single class, too few samples, or (Platt) a model whose
            validation log-odds rank inversely (a negative slope would reverse its ranking).
    """
    y, p = check_fitting_set(labels, scores, method)
    z = log_odds(p)
    if method == "platt":
        parameters = _fit_platt(y, z)
    elif method == "temperature":
        parameters = _fit_temperature(y, z)
    else:
        parameters = _fit_isotonic(y, z)
    calibration = Calibration(method=method, parameters=parameters, n=len(y), positive_rate=float(y.mean()),
                              fingerprint=fingerprint, model=model, fitted_on=fitted_on)
    from .metrics import ctr_metrics

    # In-sample metrics of the fitting samples, raw and calibrated (the model card shows them as such).
    keep = ("auc", "logloss", "acc", "brier", "ece")
    raw, calibrated = ctr_metrics(y, p), ctr_metrics(y, calibration.transform(p))
    calibration.extra["fit_metrics"] = {"raw": {key: raw[key] for key in keep},
                                        "calibrated": {key: calibrated[key] for key in keep}}
    return calibration


def _fit_platt(y: np.ndarray, z: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression

    # C=inf: plain maximum likelihood (Platt's own prior-smoothed targets would bias the base rate).
    model = LogisticRegression(C=np.inf, solver="lbfgs", tol=1e-10, max_iter=1000).fit(z[:, None], y)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    if a <= 0:
        raise CalibrationError(
            f"the validation log-odds rank clicks below non-clicks (Platt slope {a:.3g} <= 0); a monotone "
            "calibration cannot help this model: check the adapter and the validation split.")
    return {"a": a, "b": b}


def _fit_temperature(y: np.ndarray, z: np.ndarray) -> dict:
    from scipy.optimize import minimize_scalar

    def loss(log_temperature: float) -> float:
        # log(1 + exp(-s)) for the right class, written stably; s is the signed scaled log-odds.
        signed = (2 * y - 1) * z / np.exp(log_temperature)
        return float(np.mean(np.logaddexp(0.0, -signed)))

    found = minimize_scalar(loss, bounds=(np.log(1e-3), np.log(1e3)), method="bounded", options={"xatol": 1e-10})
    return {"temperature": float(np.exp(found.x))}


def _fit_isotonic(y: np.ndarray, z: np.ndarray) -> dict:
    from sklearn.isotonic import IsotonicRegression

    # Keep probabilities off 0 and 1 by half a sample, so LogLoss stays finite on unseen data.
    margin = 0.5 / (len(y) + 1)
    model = IsotonicRegression(y_min=margin, y_max=1 - margin, increasing=True, out_of_bounds="clip").fit(z, y)
    return {"z": model.X_thresholds_.tolist(), "p": model.y_thresholds_.tolist()}


# --------------------------------------------------------------------------------------------
# Content-free correction (no labels)
# --------------------------------------------------------------------------------------------

#: The paper templates' variable parts: the history list (one line, "[...]" in the list format or the
#: lines after "rated them:" in the lines format) and the target between "***".
_HISTORY_LIST = re.compile(r"\[[^\n]*\]")
_HISTORY_LINES = re.compile(r"(rated them:\n)((?:\d+\. [^\n]*\n?)+)")
_TARGET = re.compile(r"\*\*\*.*?\*\*\*", re.DOTALL)


def content_free_prompt(raw_prompt: str, placeholder: str = "N/A") -> str:
    """The raw prompt with its history and target replaced by ``placeholder`` (profile kept, collaborative tokens neutral).

    Args:
        raw_prompt: an unwrapped prompt of :func:`rella_hf.prompts.render_prompts`.
        placeholder: the neutral input (Zhao et al. use "N/A", "[MASK]" and "").

    Raises:
        CalibrationError: when the prompt has no recognisable history or target.
    """
    if not _TARGET.search(raw_prompt):
        raise CalibrationError("the prompt has no ***target*** title; pass raw prompts of rella_hf.prompts templates.")
    text = _TARGET.sub(f"***{placeholder}***", raw_prompt, count=1)
    if _HISTORY_LINES.search(text):
        text = _HISTORY_LINES.sub(lambda match: match.group(1) + placeholder + "\n", text, count=1)
    elif _HISTORY_LIST.search(text):
        text = _HISTORY_LIST.sub(lambda match: placeholder, text, count=1)
    else:
        raise CalibrationError("the prompt has no history list or lines; pass raw prompts of rella_hf.prompts templates.")
    from .collaborative_ids import neutral_id_tokens
    return neutral_id_tokens(text)


def content_free_prompts(raw_prompts: Sequence[str], placeholders: Sequence[str] = CONTENT_FREE_PLACEHOLDERS) -> list[str]:
    """The distinct content-free raw prompts of a set of raw prompts (one per placeholder and profile text).

    Args:
        raw_prompts: unwrapped prompts; with ml-latest templates they all collapse to one per placeholder.
        placeholders: neutral inputs.
    """
    seen: dict[str, None] = {}
    for placeholder in placeholders:
        for prompt in raw_prompts:
            seen.setdefault(content_free_prompt(prompt, placeholder), None)
    return list(seen)


def fit_content_free(content_free_scores, *, fingerprint: str, model: str = "") -> Calibration:
    """The content-free correction from the scores of content-free prompts (no labels needed).

    Following Zhao et al., the content-free probabilities are averaged and their log-odds
    removed: ``p' = sigmoid(z - logit(mean p_cf))``, so a content-free input scores 0.5.

    Args:
        content_free_scores: raw scores of :func:`content_free_prompts` (wrapped like the real prompts).
        fingerprint: :func:`model_fingerprint` of the scoring model.
        model: readable name of that model.
    """
    p = check_scores(content_free_scores, "content-free scores")
    if len(p) == 0:
        raise CalibrationError("no content-free scores were given; score content_free_prompts(...) first.")
    bias = float(log_odds([p.mean()])[0])
    return Calibration(method="content_free", parameters={"bias": bias}, n=len(p), positive_rate=None,
                       fingerprint=fingerprint, model=model, fitted_on="content-free prompts")


def wrap_like(raw_prompts: Sequence[str], raw_example: str, wrapped_example: str, tokenizer) -> list[str]:
    """Wrap raw prompts the way a dataset wrapped its own (the tokenizer's chat template or Vicuna).

    Args:
        raw_prompts: prompts to wrap (e.g. :func:`content_free_prompts`).
        raw_example: one raw prompt of the dataset.
        wrapped_example: the same prompt as the dataset wrapped it.
        tokenizer: the scoring model's tokenizer.
    """
    from .prompts import wrap_prompts

    for wrapper in (tokenizer, None):
        if wrap_prompts([raw_example], wrapper)[0] == wrapped_example:
            return wrap_prompts(list(raw_prompts), wrapper)
    raise CalibrationError("the dataset's prompts were wrapped with another chat template than this model's or "
                           "Vicuna's; build the dataset with --chat_model set to the scored model.")


def calibrate_on_dataset(scorer, dataset, method: str = DEFAULT_METHOD, *, fingerprint: str, model: str = "",
                         split: str = "validation") -> Calibration:
    """Score a labelled **validation** split (or the raw prompts of any split, for ``content_free``) and fit.

    Args:
        scorer: a :class:`~rella_hf.scoring.CTRScorer` of the model to calibrate.
        dataset: rows with ``prompt`` and ``label`` (``raw_prompt`` too for ``content_free``).
        method: ``platt``, ``temperature``, ``isotonic`` or ``content_free`` (labels unused).
        fingerprint: :func:`model_fingerprint` of the scored model.
        model: readable name of that model.
        split: the split's name, recorded; ``"test"`` is refused for a labelled fit.
    """
    if method not in METHODS:
        raise CalibrationError(f"method={method!r} is not one of {', '.join(METHODS)}.")
    if method == "content_free":
        raw = list(dataset["raw_prompt"])
        if not raw:
            raise CalibrationError("the dataset is empty; content-free prompts are built from its raw prompts.")
        prompts = wrap_like(content_free_prompts(raw), raw[0], dataset["prompt"][0], scorer.tokenizer)
        return fit_content_free(scorer.score(prompts, progress=False), fingerprint=fingerprint, model=model)
    if split == "test":
        raise CalibrationError("a calibration is fitted on validation samples only, never on the test split; "
                               "name a validation split.")
    labels = np.asarray(dataset["label"], dtype=np.int64)
    check_fitting_set(labels, np.full(len(labels), 0.5), method)  # refuse a bad set before scoring it
    scores = scorer.score(list(dataset["prompt"]))
    return fit_calibration(labels, scores, method, fingerprint=fingerprint, model=model, fitted_on=f"{split} split")


# --------------------------------------------------------------------------------------------
# End of ReiT training
# --------------------------------------------------------------------------------------------


def save_validation_scores(folder: str | os.PathLike, labels, scores) -> Path:
    """Write ``validation_scores.jsonl`` (one ``{"label", "score"}`` line per sample) into ``folder``, atomically."""
    from .utils import atomic_write_text

    return atomic_write_text(Path(folder) / VALIDATION_SCORES_FILE, "".join(
        json.dumps({"label": int(label), "score": float(score)}) + "\n" for label, score in zip(labels, scores)))


def fit_after_training(trainer, data, output_dir: str | os.PathLike, method: str = DEFAULT_METHOD,
                       more_rows=None, scores=None) -> Calibration | None:
    """Fit and save ``calibration.json`` for the model a ReiT run ends with, on its validation subset.

    Scores the run's validation subset (``data.eval``, the rows its validation AUC came from) with
    the final model (kept in ``validation_scores.jsonl``); when that subset is below :data:`MIN_SAMPLES`, scores
    :data:`END_OF_TRAINING_ROWS` validation rows instead (``more_rows``). Every process takes part
    in scoring (a launched run splits the prompts); the main process writes. A subset that cannot be
    fitted (one class, an inverse ranking) is logged and skipped: the run's raw scores stay valid.

    Args:
        trainer: the trainer after ``train()`` and ``save_model`` (its model is the one saved).
        data: the run's :class:`~rella_hf.training.data.TrainingData`.
        output_dir: where the weights were saved.
        method: calibration method.
        more_rows: callable ``(size) -> rows with "prompt" and "label"`` of the validation split
            (default: rebuilt from the run's configuration).
        scores: the final model's scores of ``data.eval`` when already computed (not scored again).

    Returns:
        The saved calibration, or None when none was fitted.
    """
    from .scoring import CTRScorer

    if data.eval is None or data.eval_split == "test":
        logger.info("No calibration fitted: the run has no validation subset%s.",
                    " (it evaluates on the test split, which a calibration must not see)" if data.eval is not None else "")
        return None
    rows = data.eval
    least, rare = MIN_SAMPLES[method]
    labels = np.asarray(rows["label"], dtype=np.int64)
    if len(labels) < least or min(labels.sum(), len(labels) - labels.sum()) < rare:
        try:
            rows = (more_rows or _validation_rows_loader(trainer.args, data, trainer.model))(max(END_OF_TRAINING_ROWS, least))
        except (RellaError, OSError) as error:
            logger.warning("No calibration written: the %d validation samples are too few for %s and more could "
                           "not be loaded (%s); run `rella-hf calibrate` on a larger validation split.",
                           len(labels), method, error)
            return None
        logger.info("Validation subset below the %s minimum (%d samples, %d per class): calibrating on %d rows.",
                    method, least, rare, len(rows))
    if scores is None or rows is not data.eval:
        scorer = CTRScorer(trainer.model, trainer.processing_class, batch_size=trainer.args.per_device_eval_batch_size)
        scores = scorer.score(list(rows["prompt"]), progress=False)
    if not trainer.is_world_process_zero():
        return None
    save_validation_scores(output_dir, rows["label"], scores)
    fingerprint = model_fingerprint(output_dir)
    try:
        calibration = fit_calibration(rows["label"], scores, method, fingerprint=fingerprint,
                                      model=str(trainer.args.model_name_or_path), fitted_on=f"{data.eval_split} split")
    except CalibrationError as error:
        logger.warning("No calibration written: %s", error)
        return None
    calibration.save(output_dir)
    logger.info("Calibration (%s, %d %s samples) written to %s.", method, calibration.n, data.eval_split,
                Path(output_dir) / CALIBRATION_FILE)
    return calibration


def _validation_rows_loader(config, data, model=None):
    """``size -> rows`` drawing a larger seeded subset of the run's validation split (with ``model``'s collaborative tokens)."""

    def load(size: int):
        from .collaborative_ids import with_collaborative_tokens
        from .models import TINY_RANDOM_LLAMA
        from .training.data import build_eval_rows, load_prompt_datasets
        from .training.tiny import TINY_TOKENIZER_SOURCE

        # The chat model that wrapped the run's prompts, named as training.trainer.resolve_model_source
        # names it (importing that would make this module and the trainer import each other); the
        # check below refuses rows worded otherwise.
        name = config.model_name_or_path
        chat_model = config.chat_model if config.chat_model != "auto" else (
            TINY_TOKENIZER_SOURCE if name == TINY_RANDOM_LLAMA else name)
        source = with_collaborative_tokens(load_prompt_datasets(config, chat_model)[config.test_type][data.eval_split], model)
        rows = build_eval_rows(source, size, config.test_type, config.sample_seed)
        known = dict(zip(data.eval["sample_id"], data.eval["prompt"]))
        if any(known.get(sample, prompt) != prompt for sample, prompt in zip(rows["sample_id"], rows["prompt"])):
            raise CalibrationError("the validation rows rebuilt for calibration are worded unlike the run's own; "
                                   "calibrate with `rella-hf calibrate` instead.")
        return rows

    return load


__all__ = ["CALIBRATION_FILE", "VALIDATION_SCORES_FILE", "Calibration", "CalibrationError", "METHODS", "MIN_SAMPLES",
           "calibrate_on_dataset", "check_fitting_set", "check_scores", "content_free_prompt", "content_free_prompts",
           "fit_after_training", "fit_calibration", "fit_content_free", "load_calibration", "log_odds",
           "model_fingerprint", "save_validation_scores", "weight_files", "wrap_like"]
