"""The image input's section of the data report: sizes, modes, and examples of each class."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ensayo import figures
from ensayo.features.image.preprocessing import ImagePreprocessing, image_problem, read_image
from ensayo.features.report import markdown_table


def explore_images(name: str, paths: list[str], labels: list[str], options: ImagePreprocessing,
                   directory: Path) -> list[str]:
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
    figure = figures.figure(figsize=(12, 2.1 * len(shown)), layout="tight")
    axes = figure.subplots(len(shown), 6, squeeze=False)
    for row, label in enumerate(shown):
        for column in range(6):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(by_class[label]):
                axis.imshow(read_image(by_class[label][column], options.size).transpose(1, 2, 0))
        axes[row, 0].set_title(label, loc="left", fontsize=10)
    figures.save(figure, directory / f"{name}_examples.png", dpi=90)
    return [*lines, f"![examples per class]({name}_examples.png)"]
