"""`evaluate` module for CTR prediction: AUC, LogLoss and ACC (threshold 0.5) as in the ReLLa paper, plus
the Brier score and the expected calibration error (10 equal-mass bins).

Load it offline by path: ``evaluate.load(rella_hf.metrics.EVALUATE_METRIC_PATH)``.
The numbers come from :func:`rella_hf.metrics.ctr_metrics`, the same code the library uses.
"""

import datasets
import evaluate

from rella_hf.citation import RELLA_CITATION
from rella_hf.metrics import DEFAULT_EPS, ctr_metrics, ece_consistency_band

_DESCRIPTION = """
CTR metrics for binary click prediction: ROC AUC, LogLoss (probabilities clipped to [eps, 1-eps])
and accuracy with threshold 0.5; the Brier score (mean squared error of the probabilities) and the
expected calibration error (ECE: samples sorted by prediction into 10 equal-mass bins, the
sample-weighted mean of |positive rate - mean prediction|); plus the number of samples and of
positives. A single-class reference set raises an error instead of returning NaN. With
`ece_band=True` the ECE a perfectly calibrated model reaches by chance (95 %) is returned too.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted click probabilities in [0, 1].
    references (`list` of `int`): 0/1 labels.
    eps (`float`, defaults to 1e-7): LogLoss clipping margin.
    ece_band (`bool`, defaults to False): also return `ece_band`, the 95 % ECE of a perfectly calibrated
        model with the same predictions (labels resampled from them 1,000 times, seeded).
Returns:
    auc (`float`), logloss (`float`), acc (`float`), brier (`float`), ece (`float`), n (`int`),
    positives (`int`), and `ece_band` (`float`) when asked.
Examples:
    >>> metric = evaluate.load(rella_hf.metrics.EVALUATE_METRIC_PATH)
    >>> metric.compute(predictions=[0.9, 0.2, 0.6, 0.4], references=[1, 0, 0, 1])["auc"]
    0.75
"""

_CITATION = RELLA_CITATION


class CtrMetrics(evaluate.Metric):
    """AUC, LogLoss, ACC, Brier score and ECE for click-through-rate prediction."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, eps=DEFAULT_EPS, ece_band=False):
        metrics = ctr_metrics(references, predictions, eps=eps)
        if ece_band:
            metrics["ece_band"] = ece_consistency_band(predictions)
        return metrics
