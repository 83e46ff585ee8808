"""A detection data set of your own (COCO or Pascal VOC) for training, and the letterbox.

    data = load_dataset("annotations.json", images="photos/")     # COCO
    data = load_dataset("VOCdevkit/VOC2007")                       # VOC root (or its Annotations/)
    data.images[0].boxes      # float64 (N, 4) xyxy, continuous pixels of the image as read
    data.class_names          # ("background", "cat", "dog", ...): the detector's classes 0..K

The data set is taken the way ``workshop eval`` takes it: COCO ``bbox`` = ``[x, y, width,
height]`` (``read_coco``: category ids sorted become classes ``1..K``); VOC a folder of ``.xml``
files or a root holding ``Annotations/`` (1-based inclusive corners, ``read_voc``), classes the
object names sorted. Crowd (COCO) and difficult (VOC) objects are kept as ``ignore``: not
trained on, ignored by the evaluation.

:func:`letterbox` brings an image of any size to the detector's square input as the course's
``tf.data`` pipeline does without augmentation (:func:`workshop.data.pipeline.augment_example`:
bilinear resize by one scale ``s = size / max(H, W)``, zero padding at the bottom and right),
boxes scaled by the same factors; :func:`unletterbox` maps detections back. :func:`prepare`
reads and letterboxes a split into :class:`Arrays`, :func:`targets` pads its objects for the
trainer.

Every problem (a missing file, a file that is not COCO, an image that does not exist, a box
outside its image or inverted, no annotations) raises :class:`DatasetError` naming the file,
image or annotation id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .detection import ToolkitError
from .media import MediaError, read_image

BOX_TOLERANCE = 1.0     # px: a box may overhang its image by this much (rounding); it is clipped


class DatasetError(ToolkitError):
    """A data set that cannot be trained on; the message names the file, image or annotation."""


@dataclass
class LabeledImage:
    """One image of a data set and its objects.

    Attributes:
      path: the image file.
      name: its name as the annotations give it (COCO ``file_name``, VOC ``<filename>``).
      height, width: from the annotations (checked against the file when it is read).
      boxes: float64 ``(N, 4)`` xyxy, continuous pixels, inside the image.
      classes: int64 ``(N,)`` in ``1..K`` (index into :attr:`DetectionData.class_names`).
      ignore: bool ``(N,)``: crowd (COCO) or difficult (VOC) objects.
      labels: ``(N,)`` how the annotations name each object (``"annotation id 7"``,
        ``"a.xml object 2"``), for messages.
    """

    path: Path
    name: str
    height: int
    width: int
    boxes: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray
    labels: list


@dataclass
class DetectionData:
    """A data set: its images, class names (``class_names[0] == "background"``), its format
    (``"coco"`` or ``"voc"``) and where it came from."""

    images: list
    class_names: tuple
    format: str
    annotations: Path
    image_dir: Path

    @property
    def num_classes(self) -> int:
        return len(self.class_names) - 1

    @property
    def num_objects(self) -> int:
        return int(sum(int((~im.ignore).sum()) for im in self.images))


def _check_boxes(images: list, where: str) -> None:
    """Boxes inverted, empty or outside their image (beyond :data:`BOX_TOLERANCE`) raise
    :class:`DatasetError` naming the annotation; small overhangs are clipped."""
    for im in images:
        for k, (x1, y1, x2, y2) in enumerate(im.boxes.tolist()):
            box = f"[x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g}]"
            if x2 < x1 or y2 < y1:
                raise DatasetError(f"{where}: {im.labels[k]} ({im.name}): box {box} has x2 < x1 or y2 < y1")
            if x2 == x1 or y2 == y1:
                raise DatasetError(f"{where}: {im.labels[k]} ({im.name}): box {box} is empty (zero width "
                                   "or height)")
            t = BOX_TOLERANCE
            if x1 < -t or y1 < -t or x2 > im.width + t or y2 > im.height + t:
                raise DatasetError(f"{where}: {im.labels[k]} ({im.name}): box {box} is outside the "
                                   f"image ({im.width} x {im.height} pixels)")
        if len(im.boxes):
            im.boxes[:, 0::2] = im.boxes[:, 0::2].clip(0, im.width)
            im.boxes[:, 1::2] = im.boxes[:, 1::2].clip(0, im.height)


def _check_files(images: list, image_dir: Path, where: str) -> None:
    missing = [im for im in images if not im.path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{where}: image {missing[0].name} not found: no file {missing[0].path}{more}; "
                           f"--images names the folder the annotations' file names are relative to "
                           f"(here {image_dir})")


def read_coco_dataset(annotations: Path, image_dir: Path) -> DetectionData:
    """A COCO instances file and the folder its ``file_name`` entries are relative to."""
    import json

    from workshop.data.formats import read_coco

    try:
        data = json.loads(annotations.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DatasetError(f"--dataset {annotations}: not a COCO JSON file (not text)") from None
    except ValueError as err:
        raise DatasetError(f"--dataset {annotations}: not valid JSON ({err})") from None
    except OSError as err:
        raise DatasetError(f"--dataset {annotations}: cannot read it ({err.strerror or err})") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"--dataset {annotations}: not a COCO detection file (expected an object with "
                           f"'images', 'annotations' and 'categories', found {keys})")
    try:
        records, categories = read_coco(data)
    except ValueError as err:
        raise DatasetError(f"--dataset {annotations}: {err}") from None
    if not categories:
        raise DatasetError(f"--dataset {annotations}: no categories: the detector needs at least one class")
    images = []
    for r in records:
        if not r["file_name"]:
            raise DatasetError(f"--dataset {annotations}: image id {r['image_id']} has no file_name")
        images.append(LabeledImage(image_dir / r["file_name"], r["file_name"], r["height"], r["width"],
                                   np.array(r["boxes"], np.float64).reshape(-1, 4), r["classes"],
                                   np.asarray(r["iscrowd"], bool),
                                   [f"annotation id {int(a)}" for a in r["annotation_ids"]]))
    where = f"--dataset {annotations}"
    _check_boxes(images, where)
    _check_files(images, image_dir, where)
    names = ("background",) + tuple(c["name"] for c in categories)
    return DetectionData(images, names, "coco", annotations, image_dir)


def voc_folders(root: Path, images: Path | None) -> tuple[Path, Path]:
    """``(annotations folder, images folder)`` of a VOC root (``Annotations/``, ``JPEGImages/``)
    or a plain folder of ``.xml`` files (images beside them unless ``images`` is given)."""
    folder = root / "Annotations" if (root / "Annotations").is_dir() else root
    if images is None:
        images = root / "JPEGImages" if (root / "JPEGImages").is_dir() else folder
    return folder, images


def read_voc_dataset(root: Path, image_dir: Path | None) -> DetectionData:
    """A folder of Pascal VOC ``.xml`` files (or a VOC root holding ``Annotations/``); classes are
    the object names, sorted (as ``workshop eval --voc`` numbers them)."""
    from workshop.data.formats import read_voc

    folder, image_dir = voc_folders(root, image_dir)
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise DatasetError(f"--dataset {root}: no .xml files in {folder} (expected a VOC root holding "
                           "Annotations/, a folder of VOC .xml files, or a COCO .json file)")
    records = []
    for f in files:
        try:
            records.append((f, read_voc(f)))
        except ValueError as err:
            raise DatasetError(f"--dataset {root}: {err}") from None
    names = sorted({n for _, r in records for n in r["names"]})
    class_of = {n: k + 1 for k, n in enumerate(names)}
    images = []
    for f, r in records:
        file_name = r["file_name"]
        if not file_name:
            raise DatasetError(f"--dataset {root}: {f.name} has no <filename>")
        if r["height"] <= 0 or r["width"] <= 0:
            raise DatasetError(f"--dataset {root}: {f.name}: <size> is {r['width']} x {r['height']}")
        images.append(LabeledImage(image_dir / file_name, file_name, r["height"], r["width"],
                                   np.array(r["boxes"], np.float64).reshape(-1, 4),
                                   np.array([class_of[n] for n in r["names"]], np.int64),
                                   np.asarray(r["difficult"], bool),
                                   [f"{f.name} object {k}" for k in range(len(r["names"]))]))
    where = f"--dataset {root}"
    _check_boxes(images, where)
    _check_files(images, image_dir, where)
    return DetectionData(images, ("background", *names), "voc", root, image_dir)


def load_dataset(dataset: str | Path, images: str | Path | None = None) -> DetectionData:
    """COCO (``dataset`` a ``.json`` file; ``images``: the folder its file names are relative
    to, default the JSON's folder) or VOC (``dataset`` a folder; ``images`` default
    ``JPEGImages/`` of a VOC root, else the folder of the ``.xml`` files).

    Raises :class:`DatasetError` for anything that cannot be trained on, naming it, and when
    the data set has no (non-crowd, non-difficult) object at all.
    """
    path = Path(dataset)
    image_dir = Path(images) if images is not None else None
    if not path.exists():
        raise DatasetError(f"--dataset {path}: no such file or folder")
    if image_dir is not None and not image_dir.is_dir():
        raise DatasetError(f"--images {image_dir}: no such folder")
    if path.is_dir():
        data = read_voc_dataset(path, image_dir)
    else:
        data = read_coco_dataset(path, image_dir if image_dir is not None else path.parent)
    if not data.images:
        raise DatasetError(f"--dataset {path}: no images")
    if data.num_objects == 0:
        raise DatasetError(f"--dataset {path}: no annotations (no objects in its {len(data.images)} "
                           "images, crowd and difficult ones aside): nothing to train on")
    return data


# -- letterbox ---------------------------------------------------------------------------------
def letterbox_scale(height: int, width: int, size: int) -> tuple[float, float, float]:
    """``(s, sx, sy)``: the resize factor ``size / max(H, W)`` (float32) and the factors boxes
    are scaled by (``x' = x * sx``, ``y' = y * sy``: the resized image's ``round(W s) / W`` and
    ``round(H s) / H``, computed as :func:`~workshop.data.pipeline.augment_example` does)."""
    s = np.float32(size) / np.float32(max(height, width))
    new_h = max(int(np.round(np.float32(height) * s)), 1)
    new_w = max(int(np.round(np.float32(width) * s)), 1)
    return float(s), new_w / width, new_h / height


def letterbox(image: np.ndarray, boxes: np.ndarray | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An image of any size into the detector's ``size`` x ``size`` input.

    Args:
      image: uint8 ``(H, W, 3)``.
      boxes: float ``(N, 4)`` xyxy in its pixels, or None.
      size: the square input's side.

    Returns:
      uint8 ``(size, size, 3)`` (resized bilinearly by ``size / max(H, W)``, zeros at the bottom
      and right) and float64 ``(N, 4)`` xyxy boxes in its pixels (``(0, 4)`` for None).
    """
    from workshop.data.pipeline import augment_example

    h, w = image.shape[:2]
    s, sx, sy = letterbox_scale(h, w, size)
    b = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    out = augment_example({"image": image, "boxes": b, "classes": np.zeros(len(b), np.int32)},
                          seed=[0, 0], output_size=(size, size), flip=False,
                          scale_range=(s, s), min_box_size=0.0,
                          random_crop=False)
    pixels = np.clip(np.round(out["image"].numpy() * 255.0), 0, 255).astype(np.uint8)
    return pixels, b * np.array([sx, sy, sx, sy])


def unletterbox(boxes: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Boxes float ``(N, 4)`` xyxy in the letterboxed ``size`` x ``size`` input back to the
    ``height`` x ``width`` image's pixels (clipped to it); float64 ``(N, 4)``."""
    _, sx, sy = letterbox_scale(height, width, size)
    out = np.asarray(boxes, np.float64).reshape(-1, 4) / np.array([sx, sy, sx, sy])
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out


# -- into arrays ----------------------------------------------------------------------------
@dataclass
class Arrays:
    """Letterboxed images and their objects: ``images`` uint8 ``(N, S, S, 3)``; per image
    ``boxes`` float64 ``(n_i, 4)`` xyxy in the letterboxed pixels, ``classes`` int64 ``(n_i,)``,
    ``ignore`` bool ``(n_i,)``; ``names`` the images' names."""

    images: np.ndarray
    boxes: list
    classes: list
    ignore: list
    names: list


def prepare(data: DetectionData, names: list[str], size: int, verbose: int, what: str) -> Arrays:
    """Read (checking each image's size against its annotation) and letterbox ``names``."""
    from tqdm import tqdm

    by_name = {im.name: im for im in data.images}
    images, boxes, classes, ignore = [], [], [], []
    for name in tqdm(names, desc=f"reading {what} images", unit="image", disable=not verbose or len(names) < 2):
        im = by_name[name]
        try:
            rgb = read_image(im.path)
        except MediaError as err:
            raise DatasetError(f"image {im.name} ({im.path}): {err}") from None
        if rgb.shape[:2] != (im.height, im.width):
            raise DatasetError(f"image {im.name}: the file is {rgb.shape[1]} x {rgb.shape[0]} pixels, its "
                               f"annotation says {im.width} x {im.height}")
        pixels, scaled = letterbox(rgb, im.boxes, size)
        images.append(pixels)
        boxes.append(scaled)
        classes.append(im.classes)
        ignore.append(im.ignore)
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return Arrays(stack, boxes, classes, ignore, list(names))


def targets(arrays: Arrays, max_gt: int):
    """Padded ground truth for the trainer (crowd / difficult objects left out):
    float32 ``(N, max_gt, 4)`` and int32 ``(N, max_gt)``, padded with -1."""
    from workshop.models.detector_training import pad_ground_truth

    kept = [(b[~g], c[~g]) for b, c, g in zip(arrays.boxes, arrays.classes, arrays.ignore)]
    return pad_ground_truth([b for b, _ in kept], [c for _, c in kept], max_gt)
