"""A teacher's probabilities as a student's second target (distillation, `train.teacher`): each training row's
teacher classes and probabilities, in the student's class indices, and the loss that learns from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ensayo.data import DataError
from ensayo.outputs.category import CategoryOutput

TEACHER = "__teacher__"  # the batch key of the teacher's targets (no input feature has this name)
PAD = -1  # a target slot with no class (a teacher class the student does not have)


@dataclass
class TeacherProbabilities:
    """A teacher's top probabilities of the rows it holds out, by line of the data file: `classes[top_classes]`
    with `top_probabilities`."""

    run_id: str
    lines: np.ndarray  # (rows,) int64, sorted
    classes: np.ndarray  # (classes,) str
    top_classes: np.ndarray  # (rows, top) int32, into `classes`
    top_probabilities: np.ndarray  # (rows, top) float32

    def arrays(self) -> dict[str, np.ndarray]:
        return {"run_id": np.array(self.run_id), "lines": self.lines, "classes": self.classes,
                "top_classes": self.top_classes, "top_probabilities": self.top_probabilities}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TeacherProbabilities:
        return cls(str(arrays["run_id"]), arrays["lines"], arrays["classes"], arrays["top_classes"],
                   arrays["top_probabilities"])

    def for_lines(self, lines: np.ndarray, student: CategoryOutput, temperature: float) -> np.ndarray:
        """The teacher's targets of the student's rows at `lines`: a (rows, top, 2) float32 array of student
        class indices (`PAD` where the teacher's class is not the student's) and their probabilities, softened
        by `temperature` and summing to 1 over the student's classes. Every line must be the teacher's."""
        where = np.searchsorted(self.lines, lines)
        found = (where < len(self.lines)) & (self.lines[np.minimum(where, len(self.lines) - 1)] == lines)
        if not found.all():
            missing = lines[~found]
            raise DataError(f"train.teacher: the teacher has no probabilities for {len(missing):,} of the student's "
                            f"training rows (lines {', '.join(map(str, missing[:5].tolist()))}"
                            f"{', ...' if len(missing) > 5 else ''}); it cross-validated other rows of the data")
        mapping = np.array([student.index.get(str(name), PAD) for name in self.classes], dtype=np.int64)
        indices = mapping[self.top_classes[where]]
        softened = np.where(indices != PAD, self.top_probabilities[where].astype(np.float64), 0.0) ** (1 / temperature)
        total = softened.sum(axis=1, keepdims=True)
        # a row whose teacher classes are none of the student's: its probabilities are left at 0, so the teacher
        # teaches nothing there (the label still does)
        softened = np.divide(softened, total, out=np.zeros_like(softened), where=total > 0)
        return np.stack([indices.astype(np.float32), softened.astype(np.float32)], axis=-1)


def distillation_loss(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """temperature^2 x the cross-entropy of the student's softened probabilities to the teacher's, averaged over the
    rows (Hinton et al. 2015; the square keeps the gradients' scale as the temperature changes). `targets`:
    (rows, top, 2) as `TeacherProbabilities.for_lines` gives them."""
    indices, probabilities = targets[..., 0].long(), targets[..., 1]
    log_student = torch.log_softmax(logits / temperature, dim=-1).gather(1, indices.clamp(min=0))
    return -(probabilities * log_student).sum(dim=1).mean() * temperature ** 2
