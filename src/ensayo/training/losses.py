"""The classification loss a recipe asks for: cross-entropy or focal, each optionally weighted by class."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ensayo.recipe import TrainConfig


class FocalLoss(nn.Module):
    """Lin et al.'s focal loss: cross-entropy scaled by (1 - p_true)^gamma, so that rows the model already gets
    right weigh less; with class weights, each row's loss is also scaled by its class's weight."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = functional.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is None:
            return loss.mean()
        weights = self.weight[labels]
        return (loss * weights).sum() / weights.sum()


def balanced_weights(labels: np.ndarray, classes: int) -> torch.Tensor:
    """Each class's inverse training frequency, n / (classes present x count), as scikit-learn's `balanced`;
    a class with no training row gets weight 0 (no row of it is ever seen)."""
    counts = np.bincount(labels[labels >= 0], minlength=classes).astype(np.float64)
    present = max(int((counts > 0).sum()), 1)
    weights = np.divide(counts.sum(), present * counts, out=np.zeros(classes), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


def classification_loss(config: TrainConfig, labels: np.ndarray, classes: int) -> nn.Module:
    """The loss of `config` (train.loss, train.class_weights), its class weights from the training labels."""
    weight = balanced_weights(labels, classes) if config.class_weights == "balanced" else None
    if config.loss == "focal":
        return FocalLoss(config.focal_gamma, weight)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
