"""Classification metrics, written from the confusion matrix (tests check them against scikit-learn).

Everything comes from one table: ``confusion[i][j]`` counts the examples of true class i that were
predicted as class j. Then, for each class c:

- precision = confusion[c][c] / (column c's sum): of the texts called c, the share that are c;
- recall    = confusion[c][c] / (row c's sum): of the texts that are c, the share found;
- F1        = 2 * precision * recall / (precision + recall), their harmonic mean.

A ratio whose denominator is 0 (a class never predicted, or absent) is 0.0, as scikit-learn's
``zero_division=0``. Accuracy alone hides a weak minority class: a spam filter that calls every
message "ham" scores 0.87 on sms-spam; its spam recall is 0. Macro averages weigh classes
equally, weighted averages by support (the number of true examples of each class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gptlab.errors import GptlabError


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> list[list[int]]:
    """(num_classes, num_classes) counts: rows are true classes, columns predicted classes."""
    if len(y_true) != len(y_pred):
        raise GptlabError(f"got {len(y_true)} true labels but {len(y_pred)} predictions")
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(y_true, y_pred):
        if not (0 <= t < num_classes and 0 <= p < num_classes):
            raise GptlabError(f"label out of range 0..{num_classes - 1}: true {t}, predicted {p}")
        matrix[t][p] += 1
    return matrix


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


@dataclass
class ClassificationMetrics:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix."""

    label_names: list[str]
    confusion: list[list[int]]
    loss: float | None = None
    precision: list[float] = field(init=False)
    recall: list[float] = field(init=False)
    f1: list[float] = field(init=False)
    support: list[int] = field(init=False)

    def __post_init__(self) -> None:
        k = len(self.label_names)
        predicted = [sum(self.confusion[i][c] for i in range(k)) for c in range(k)]
        self.support = [sum(row) for row in self.confusion]
        self.precision = [_ratio(self.confusion[c][c], predicted[c]) for c in range(k)]
        self.recall = [_ratio(self.confusion[c][c], self.support[c]) for c in range(k)]
        self.f1 = [_ratio(2 * p * r, p + r) for p, r in zip(self.precision, self.recall)]

    @property
    def n(self) -> int:
        return sum(self.support)

    @property
    def accuracy(self) -> float:
        return _ratio(sum(self.confusion[c][c] for c in range(len(self.label_names))), self.n)

    @property
    def macro_f1(self) -> float:
        return sum(self.f1) / len(self.f1)

    @property
    def weighted_f1(self) -> float:
        return _ratio(sum(f * s for f, s in zip(self.f1, self.support)), self.n)

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "per_class": {
                name: {"precision": p, "recall": r, "f1": f, "support": s}
                for name, p, r, f, s in zip(
                    self.label_names, self.precision, self.recall, self.f1, self.support
                )
            },
            "labels": list(self.label_names),
            "confusion_matrix": [list(row) for row in self.confusion],
        }

    def format(self) -> str:
        """A plain-text report: accuracy, a per-class table and the confusion matrix."""
        width = max(9, *(len(n) for n in self.label_names))
        lines = [f"examples  {self.n:,}", f"accuracy  {self.accuracy:.4f}"]
        if self.loss is not None:
            lines.append(f"loss      {self.loss:.4f}")
        lines += ["", f"{'class':<{width}}  precision  recall     f1  support"]
        for name, p, r, f, s in zip(self.label_names, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{name:<{width}}  {p:9.4f}  {r:6.4f}  {f:.4f}  {s:7,}")
        lines.append(f"{'macro avg':<{width}}  {'':9}  {'':6}  {self.macro_f1:.4f}  {self.n:7,}")
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        cell = max(width, *(len(str(v)) for row in self.confusion for v in row))
        lines.append(" " * cell + "  " + "  ".join(f"{n:>{cell}}" for n in self.label_names))
        for name, row in zip(self.label_names, self.confusion):
            lines.append(f"{name:<{cell}}  " + "  ".join(f"{v:>{cell}}" for v in row))
        return "\n".join(lines)


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str], loss: float | None = None
) -> ClassificationMetrics:
    """Metrics of predictions ``y_pred`` against ``y_true`` (class indices into ``label_names``)."""
    if len(label_names) < 2:
        raise GptlabError(f"need at least two classes, got {list(label_names)!r}")
    matrix = confusion_matrix(y_true, y_pred, len(label_names))
    return ClassificationMetrics(list(label_names), matrix, loss)
