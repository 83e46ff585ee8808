"""Images and videos in and out, for the toolkit's commands.

* Still images are read with Pillow: the header first (:func:`image_size`, so a huge image is
  refused before its pixels are decoded), then decoded, turned upright by its EXIF orientation
  (as browsers and ``cv2.imread`` show it) and converted to uint8 RGB ``(H, W, 3)``.
* Videos are read with OpenCV one frame at a time (:class:`VideoReader`; never loaded whole)
  and written the same way (:class:`VideoWriter`, MPEG-4).
* :func:`draw_detections` draws xyxy boxes (continuous pixel coordinates) with class names and
  scores on a copy of an RGB image, in the colours :mod:`workshop.vis` gives the classes
  (matplotlib's ``tab10`` by class id).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DEFAULT_MAX_PIXELS = 40_000_000
"""Largest image (width x height) read by default: 40 megapixels (e.g. 8000 x 5000)."""

# matplotlib's tab10, in the order workshop.vis picks it (colour = tab10[class_id % 10])
TAB10 = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
         (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


class MediaError(ValueError):
    """A file or upload that cannot be read as an image or a video; the message says why."""


# -- finding inputs -------------------------------------------------------------------------
def kind_of(path: Path) -> str:
    """``"image"`` or ``"video"`` by the file's suffix; an unknown suffix is an image when
    Pillow recognises its header, else a video (OpenCV then says whether it can open it)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    try:
        image_size(path)
        return "image"
    except MediaError:
        return "video"


def collect_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[Path, str]], list[Path]]:
    """The files to run on: each path as given, and every image and video under each folder
    (recursively, sorted by path). Returns ``([(path, "image" | "video"), ...], skipped)``
    where ``skipped`` lists the folders' other files.

    Raises :class:`MediaError` naming every path that does not exist (before anything runs).
    """
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise MediaError("not found: " + ", ".join(missing))
    found: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                suffix = f.suffix.lower()
                if suffix in IMAGE_SUFFIXES or suffix in VIDEO_SUFFIXES:
                    found.append((f, kind_of(f)))
                else:
                    skipped.append(f)
        else:
            found.append((p, kind_of(p)))
    return found, skipped


# -- still images ----------------------------------------------------------------------------
def _open(source):
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return Image.open(io.BytesIO(bytes(source)))
        return Image.open(source)
    except UnidentifiedImageError:
        raise MediaError("not an image Pillow can read (JPEG, PNG, BMP, GIF, WebP, TIFF, ...)") from None
    except Image.DecompressionBombError as err:
        raise MediaError(f"image too large: {err}") from None
    except OSError as err:
        raise MediaError(f"cannot read the image: {err}") from None


def image_size(source) -> tuple[int, int]:
    """``(width, height)`` from the image's header (``source``: a path or the file's bytes),
    without decoding its pixels. Raises :class:`MediaError` if it is not an image."""
    with _open(source) as img:
        return int(img.size[0]), int(img.size[1])


def read_image(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image (a path or the file's bytes) to uint8 RGB ``(H, W, 3)``, upright by its
    EXIF orientation; alpha is dropped, grey becomes three equal channels.

    Raises :class:`MediaError` when it is not an image, is truncated, has no pixels, or has more
    than ``max_pixels`` pixels (checked on the header, before decoding).
    """
    from PIL import Image, ImageOps

    with _open(source) as img:
        w, h = img.size
        if w <= 0 or h <= 0:
            raise MediaError(f"the image has no pixels ({w} x {h})")
        if w * h > max_pixels:
            raise MediaError(f"image is {w} x {h} = {w * h / 1e6:.1f} megapixels; the limit is "
                             f"{max_pixels / 1e6:g} megapixels")
        try:
            upright = ImageOps.exif_transpose(img)
            rgb = np.asarray(upright.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise MediaError(f"cannot decode the image: {err}") from None
    return np.ascontiguousarray(rgb)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write uint8 RGB ``(H, W, 3)`` to ``path`` (format by suffix; JPEG for unknown ones),
    atomically: a reader never sees half a file."""
    import cv2

    path = Path(path)
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp",
                                                            ".tif", ".tiff") else ".jpg"
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise MediaError(f"OpenCV could not encode {path.name}")
    atomic_write_bytes(path, buf.tobytes())


# -- video -----------------------------------------------------------------------------------
class VideoReader:
    """Frames of a video file, streamed: ``for rgb in reader.frames(): ...`` (uint8 RGB
    ``(H, W, 3)``). ``fps`` is the file's frame rate (25 when it states none), ``frame_count``
    OpenCV's estimate (0 when unknown), ``size`` ``(width, height)``."""

    def __init__(self, path: Path):
        import cv2

        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise MediaError(f"{self.path.name}: OpenCV cannot open it as a video")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 25.0
        self.frame_count = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames(self) -> Iterator[np.ndarray]:
        import cv2

        while True:
            ok, bgr = self._cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """An MPEG-4 video written frame by frame (uint8 RGB ``(H, W, 3)``, all of one size), into a
    temporary file renamed to ``path`` by :meth:`close` (``keep=False`` discards it)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                       (int(size[0]), int(size[1])))
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise MediaError(f"OpenCV cannot write an MPEG-4 video to {self.path}")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        self._writer.release()
        if keep:
            os.chmod(self._tmp, 0o666 & ~_umask())
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


# -- drawing ---------------------------------------------------------------------------------
def class_colour(class_id: int) -> tuple[int, int, int]:
    """RGB colour of a class id, as :mod:`workshop.vis` draws it (tab10)."""
    return TAB10[int(class_id) % 10]


def draw_detections(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                    class_names: Sequence[str]) -> np.ndarray:
    """A copy of uint8 RGB ``(H, W, 3)`` with each float ``(N, 4)`` xyxy box drawn and labelled
    ``"name 0.97"`` (``scores`` float ``(N,)``, ``classes`` int ``(N,)`` ids into ``class_names``)."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    scale = max(0.35, min(h, w) / 900)
    for box, score, cls in zip(np.asarray(boxes, np.float64), np.asarray(scores), np.asarray(classes)):
        colour = class_colour(int(cls))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (max(x2 - 1, x1), max(y2 - 1, y1)), colour, thick)
        name = class_names[int(cls)] if 0 <= int(cls) < len(class_names) else str(int(cls))
        label = f"{name} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(y1 + th + 2, h - 1)
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), colour, -1)
        cv2.putText(out, label, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


# -- files -----------------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so
    an existing file is replaced whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp's 0600 -> what open() would have given
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
