"""Image statistics feature: a few classical measures of how a photo was taken and stored (JPEG quality,
bytes per pixel, sharpness, fine detail, spectral falloff, noise, exposure, colour, size), read from each
image file with Pillow, standardized with the training split's statistics. Where the pixels of an image
input are what a photo shows, these say how good a copy of it the file is, which a network that first
shrinks the image sees only in part (a JPEG quality table is not in the pixels at all)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from ensayo.features.base import IMAGE_FILES, Feature, register_feature
from ensayo.features.image_stats_schema import ImageStatsPreprocessing

# The luminance quantization table of the JPEG standard (ITU T.81, Annex K), which libjpeg scales by quality.
JPEG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's "L"


def _libjpeg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((JPEG_LUMINANCE * scale + 50) / 100), 1, 255)


LIBJPEG_TABLES = np.stack([_libjpeg_table(q) for q in range(1, 101)])


def jpeg_quality(image: Image.Image) -> float:
    """The libjpeg quality (1-100) whose luminance table is closest to the file's; 100 for a file that is
    not a JPEG (nothing was lost to compression)."""
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables:
        return 100.0
    table = np.asarray(tables[min(tables)], dtype=np.float64)[:64]
    return float(np.argmin(np.abs(LIBJPEG_TABLES - table).sum(axis=1)) + 1)


def _laplacian(grey: np.ndarray) -> np.ndarray:
    return (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])


def _power_spectrum(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(power, radial frequency in cycles per pixel) of the Hann-windowed image."""
    window = np.outer(np.hanning(grey.shape[0]), np.hanning(grey.shape[1]))
    power = np.abs(np.fft.fft2((grey - grey.mean()) * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return power, np.hypot(fx, fy)


def _fine_detail(power: np.ndarray, frequency: np.ndarray) -> float:
    """Log share of the spectrum's power above half the Nyquist frequency: what blurring or upscaling
    removes first."""
    fine = power[frequency > 0.25].sum()
    return float(np.log((fine + 1e-6) / (power.sum() + 1e-6)))


def _falloff(power: np.ndarray, frequency: np.ndarray) -> float:
    """Log ratio of the median power at 0.3-0.45 cycles per pixel to that at 0.1-0.2. A photo's spectrum
    falls roughly as a power of frequency whatever it shows, and blur makes it fall faster at the top, so
    this ratio reads blur; fine_detail, a share of all the power, also moves with how much broad structure
    a photo has. Medians, so that the peaks of JPEG's 8-pixel blocks weigh nothing."""
    high, middle = power[(frequency >= 0.3) & (frequency < 0.45)], power[(frequency >= 0.1) & (frequency < 0.2)]
    if high.size == 0 or middle.size == 0:  # a few pixels across
        return 0.0
    return float(np.log((np.median(high) + 1e-6) / (np.median(middle) + 1e-6)))


def _noise(grey: np.ndarray) -> float:
    """Immerkaer's estimate of the standard deviation of Gaussian noise (1996): a mask that cancels
    smooth structure up to second order."""
    height, width = grey.shape
    mask = (grey[:-2, :-2] + grey[:-2, 2:] + grey[2:, :-2] + grey[2:, 2:]
            - 2 * (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]) + 4 * grey[1:-1, 1:-1])
    return float(np.sqrt(np.pi / 2) * np.abs(mask).sum() / (6 * (width - 2) * (height - 2)))


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness (2003), from the opponent channels rg and yb."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, (r + g) / 2 - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _central_crop(image: Image.Image, side: int) -> Image.Image:
    width, height = image.size
    left, top = max(0, (width - side) // 2), max(0, (height - side) // 2)
    return image.crop((left, top, min(width, left + side), min(height, top + side)))


def image_statistics(path: str, detail_side: int = 512, overview_side: int = 256) -> dict[str, float]:
    """Every statistic of STATS for one image file (pixel values on a 0-255 scale). The measures of fine
    structure (sharpness, fine detail, falloff, noise) do not grow with the photo's size and are read
    from the central `detail_side` square at full resolution; exposure and colour from the whole photo
    shrunk to `overview_side`. A photo of many megapixels costs no more than a small one."""
    with Image.open(path) as image:
        quality = jpeg_quality(image)
        width, height = image.size
        rgb = image.convert("RGB")
    grey = np.asarray(_central_crop(rgb, detail_side), dtype=np.float64) @ LUMA
    rgb.thumbnail((overview_side, overview_side), Image.Resampling.BOX)
    overview = np.asarray(rgb, dtype=np.float64)
    overview_grey = overview @ LUMA
    small = min(grey.shape) < 3
    power, frequency = _power_spectrum(grey)
    return {
        "jpeg_quality": quality,
        "bytes_per_pixel": float(np.log(os.path.getsize(path) / (width * height))),
        "sharpness": 0.0 if small else float(np.log1p(_laplacian(grey).var())),
        "fine_detail": 0.0 if small else _fine_detail(power, frequency),
        "falloff": _falloff(power, frequency),
        "noise": 0.0 if small else _noise(grey),
        "brightness": float(overview_grey.mean()),
        "contrast": float(overview_grey.std()),
        "colourfulness": _colourfulness(overview),
        "width": float(np.log(width)),
        "height": float(np.log(height)),
    }


def _statistics_table(paths: list[str], stats: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, stats) raw values and a flag per row whose file could not be read (left at 0)."""
    raw = np.zeros((len(paths), len(stats)))
    missing = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(track(paths, description=f"{name}: image statistics", transient=True)):
        try:
            found = image_statistics(path)
        except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            missing[i] = True  # only with missing: zero; otherwise the row was dropped when read
            continue
        raw[i] = [found[s] for s in stats]
    return raw, missing


@register_feature("image_stats")
class ImageStatsFeature(Feature):
    Preprocessing = ImageStatsPreprocessing
    values = IMAGE_FILES

    def __init__(self, name: str, column: str, preprocessing: ImageStatsPreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.center = np.zeros(len(self.options.stats))
        self.scale = np.ones(len(self.options.stats))

    @property
    def options(self) -> ImageStatsPreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    def fit(self, values: list[str]) -> ImageStatsFeature:
        self._fit_table(*_statistics_table(values, self.options.stats, self.name))
        return self

    def transform(self, values: list[str]) -> np.ndarray:
        return self._scaled(*_statistics_table(values, self.options.stats, self.name))

    def fit_transform(self, values: list[str]) -> np.ndarray:
        raw, missing = _statistics_table(values, self.options.stats, self.name)
        self._fit_table(raw, missing)
        return self._scaled(raw, missing)

    def _fit_table(self, raw: np.ndarray, missing: np.ndarray) -> None:
        if missing.all():
            raise ValueError(f"input {self.name!r}: no readable image in the training split")
        self.center = raw[~missing].mean(axis=0)
        spread = raw[~missing].std(axis=0)
        self.scale = np.where(spread > 1e-6, spread, 1.0)  # a constant (all photos one size) stays 0

    def _scaled(self, raw: np.ndarray, missing: np.ndarray) -> np.ndarray:
        scaled = np.clip((raw - self.center) / self.scale, -5, 5)
        scaled[missing] = 0.0
        return np.column_stack([scaled, missing]).astype(np.float32)

    def arrays(self, encoded: np.ndarray, index: np.ndarray) -> np.ndarray:
        return encoded[np.asarray(index)]

    def state(self) -> dict[str, Any]:
        return {"center": self.center.tolist(), "scale": self.scale.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.center, self.scale = np.asarray(state["center"]), np.asarray(state["scale"])

    def describe(self) -> dict[str, Any]:
        return {name: round(float(c), 3) for name, c in zip(self.options.stats, self.center, strict=True)}

    @classmethod
    def explore(cls, name: str, values: list[str], labels: list[str], preprocessing: Any, directory: Any) -> list[str]:
        from ensayo.features.report import markdown_table

        raw, missing = _statistics_table(values, preprocessing.stats, name)
        if missing.all():
            return [f"{len(values):,} images, none readable"]
        raw, kept = raw[~missing], [label for label, m in zip(labels, missing, strict=True) if not m]
        classes = sorted(set(kept))[:10]
        header = ["statistic", "all", *classes]
        rows = []
        for j, stat in enumerate(preprocessing.stats):
            by_class = [np.median(raw[[k == c for k in kept], j]) for c in classes]
            rows.append([stat, f"{np.median(raw[:, j]):.3g}", *(f"{v:.3g}" for v in by_class)])
        return [f"{len(raw):,} images, {int(missing.sum())} unreadable; medians of each statistic, overall and "
                "by class:", "", *markdown_table(header, rows)]
