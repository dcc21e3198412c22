"""The training layer: a trainer over any `nn.Module` and the batches it reads."""

from ensayo.training import distributed
from ensayo.training.batches import Batches, EncodedSplit, RankRows, bucketed_order, encode_split, to_device
from ensayo.training.losses import FocalLoss, balanced_weights, classification_loss
from ensayo.training.trainer import (
    SHOWN,
    Trainer,
    TrainState,
    higher_is_better,
    lr_multiplier,
    make_optimizers,
    pick_device,
    seed_everything,
    split_parameters,
)
from ensayo.training.weights import load_weights, save_weights

__all__ = [
    "SHOWN",
    "Batches",
    "EncodedSplit",
    "FocalLoss",
    "RankRows",
    "TrainState",
    "Trainer",
    "balanced_weights",
    "bucketed_order",
    "classification_loss",
    "distributed",
    "encode_split",
    "higher_is_better",
    "load_weights",
    "lr_multiplier",
    "make_optimizers",
    "pick_device",
    "save_weights",
    "seed_everything",
    "split_parameters",
    "to_device",
]
