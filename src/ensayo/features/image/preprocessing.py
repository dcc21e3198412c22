"""Image files: checked, read with Pillow, converted to RGB and resized; the options of an image input."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from ensayo.recipe import Strict

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
