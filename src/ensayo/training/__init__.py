"""The training layer: a trainer over any `nn.Module` and the batches it reads. Names are imported on first use:
which way a metric improves (`best`) needs no torch."""

from ensayo.lazy import exports
from ensayo.training.best import higher_is_better as higher_is_better  # (re-exported)

_BATCHES, _LOSSES = "ensayo.training.batches", "ensayo.training.losses"
_TRAINER, _WEIGHTS = "ensayo.training.trainer", "ensayo.training.weights"
_EXPORTS = {
    "distributed": "ensayo.training.distributed",
    **dict.fromkeys(["Batches", "EncodedSplit", "RankRows", "bucketed_order", "encode_split", "to_device"], _BATCHES),
    **dict.fromkeys(["FocalLoss", "balanced_weights", "classification_loss"], _LOSSES),
    **dict.fromkeys(["SHOWN", "Trainer", "TrainState", "lr_multiplier", "make_optimizers", "pick_device",
                     "seed_everything", "split_parameters"], _TRAINER),
    **dict.fromkeys(["load_weights", "save_weights"], _WEIGHTS),
}
__all__ = sorted([*_EXPORTS, "higher_is_better"])
__getattr__ = exports(__name__, _EXPORTS)
