"""The sanity task: can a training recipe learn to read the prompt at all?

Real prompt rows are relabelled so that the answer is a deterministic function of what the
prompt shows: "Yes." when the mean of the shown ratings is at least a threshold. Nothing else
changes (same prompts, same template, same tokenization). A pipeline that trains the answer
token where scoring reads it, on prompts that reach the model whole, with a learning rate that
moves the adapter, learns this rule to a validation AUC near 1; a broken one (masking, label
token, truncation, answer position, learning rate, capacity) stays near 0.5. Run it before
reading anything into a real CTR result (``experiments/sanity_task.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import datasets

#: Default rule: the user "likes" the target when the shown ratings average at least this.
SANITY_THRESHOLD = 3.5


def shown_rating_means(dataset: datasets.Dataset) -> np.ndarray:
    """Mean of the ``history_ratings`` shown in each prompt (0 for a prompt that shows none).

    Args:
        dataset: a prompt split with a ``history_ratings`` list column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = dataset.data.column("history_ratings").combine_chunks()
    if isinstance(column, pa.ChunkedArray):  # an empty table keeps no chunk to combine
        column = pa.array([], type=pa.list_(pa.float32())) if column.num_chunks == 0 else column.chunk(0)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
    owners = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
    totals = np.bincount(owners, weights=values, minlength=len(dataset))
    counts = np.bincount(owners, minlength=len(dataset))
    return np.divide(totals, counts, out=np.zeros(len(dataset)), where=counts > 0)


def relabel_by_shown_ratings(dataset: datasets.Dataset, threshold: float = SANITY_THRESHOLD) -> datasets.Dataset:
    """The same prompts with ``label``/``completion`` set by the rule mean(shown ratings) >= ``threshold``.

    Args:
        dataset: a prompt split (``prompt``, ``history_ratings``, ``label``, ``completion``).
        threshold: the rating mean at and above which the answer is "Yes.".

    Returns:
        A dataset with the new ``label`` (int64) and ``completion``; the real label is kept as
        ``original_label``.
    """
    from ..errors import ConfigError
    from ..prompts import answer_completion

    missing = {"prompt", "history_ratings", "label"} - set(dataset.column_names)
    if missing:
        raise ConfigError(f"the sanity task needs the columns {sorted(missing)}; pass a rella-hf prompt split.")
    labels = (shown_rating_means(dataset) >= threshold).astype(np.int64)
    completions = [answer_completion(prompt, bool(label)) for prompt, label in zip(dataset["prompt"], labels)]
    relabelled = dataset.rename_column("label", "original_label")
    if "completion" in relabelled.column_names:
        relabelled = relabelled.remove_columns("completion")
    return relabelled.add_column("label", labels.tolist()).add_column("completion", completions)


def auc_by_margin(labels, scores, means, threshold: float = SANITY_THRESHOLD,
                  margins=(0.0, 0.25, 0.5, 1.0)) -> list[dict]:
    """AUC of the sanity task on the samples whose shown-rating mean is at least ``margin`` from the threshold.

    Tells a pipeline that does not read the prompt (AUC near 0.5 at every margin) from one that
    reads it approximately (near 1 far from the threshold, lower only close to it, where the rule
    asks for exact arithmetic over the shown ratings).

    Args:
        labels: sanity labels (0/1).
        scores: P(yes) of each sample.
        means: the shown-rating mean of each sample (:func:`shown_rating_means`).
        threshold: the rule's threshold.
        margins: distances from the threshold to report.

    Returns:
        One ``{"margin", "n", "auc"}`` per margin (``auc`` is None when one class is missing).
    """
    from ..metrics import ctr_metrics

    labels, scores, means = (np.asarray(values, dtype=np.float64) for values in (labels, scores, means))
    bands = []
    for margin in margins:
        keep = np.abs(means - threshold) >= margin
        kept_labels = labels[keep].astype(np.int64)
        both_classes = kept_labels.size and 0 < kept_labels.sum() < kept_labels.size
        auc = ctr_metrics(kept_labels, scores[keep])["auc"] if both_classes else None
        bands.append({"margin": float(margin), "n": int(keep.sum()), "auc": auc})
    return bands
