"""A few real photographs for demonstrations, with hand-drawn boxes.

The photographs are scikit-image's sample images (public domain / CC0; sources and licences in
``data/README.md``), downscaled to 320 px on the long side and stored as JPEG in
``data/photos/``; their boxes are in ``data/photos_coco.json`` (COCO, ``bbox`` = xywh).
:func:`load_photos` reads both and returns boxes in this course's xyxy convention.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workshop.data.formats import read_coco

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


def data_dir() -> Path:
    """The repository's ``data/`` folder (override with the ``WORKSHOP_DATA`` environment variable)."""
    env = os.environ.get("WORKSHOP_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


@dataclass
class Photo:
    """A photograph and its boxes.

    Attributes:
      name: e.g. ``"astronaut"``.
      image: uint8 ``(H, W, 3)`` RGB.
      boxes: float64 ``(N, 4)`` xyxy, continuous pixel coordinates.
      classes: int64 ``(N,)`` in ``1..K`` (index into ``class_names``, 0 = background).
      class_names: ``("background", "person", ...)`` shared by all photos.
    """

    name: str
    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    class_names: tuple

    @property
    def labels(self) -> list[str]:
        """The class name of each box."""
        return [self.class_names[c] for c in self.classes]


def load_photos(names: Sequence[str] | None = None, root=None) -> list[Photo]:
    """Load the demonstration photographs with their annotated boxes.

    Args:
      names: which photos (default all, in the order of :data:`PHOTO_NAMES`), e.g. ``["coffee"]``.
      root: the data folder (default :func:`data_dir`), holding ``photos_coco.json`` and ``photos/``.

    Returns:
      list of :class:`Photo` (uint8 images, float64 xyxy boxes, int64 classes).
    """
    from PIL import Image  # Pillow ships with matplotlib

    root = Path(root) if root is not None else data_dir()
    ann = root / "photos_coco.json"
    if not ann.is_file():
        raise ValueError(f"annotation file not found: {ann} (set WORKSHOP_DATA to the data folder)")
    records, categories = read_coco(ann)
    class_names = ("background",) + tuple(c["name"] for c in categories)
    by_name = {Path(r["file_name"]).stem: r for r in records}
    wanted = list(PHOTO_NAMES if names is None else names)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown photo {unknown[0]!r}; expected one of {sorted(by_name)}")
    photos = []
    for name in wanted:
        rec = by_name[name]
        with Image.open(root / "photos" / rec["file_name"]) as im:
            image = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if image.shape[:2] != (rec["height"], rec["width"]):
            raise ValueError(f"{rec['file_name']}: image is {image.shape[:2]}, annotation says "
                             f"{(rec['height'], rec['width'])}")
        photos.append(Photo(name, image, rec["boxes"], rec["classes"], class_names))
    return photos
