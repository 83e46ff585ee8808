"""The detector the toolkit's commands share: weights, stages, filters, results.

    predictor = load_predictor(checkpoint=None, notebooks=["my_06.ipynb"], min_score=0.3)
    result = predictor.predict(rgb)      # uint8 (H, W, 3) RGB
    result["boxes"]    # float64 (D, 4) xyxy, continuous pixels of ``rgb``, no "+1"
    result["scores"]   # float64 (D,), decreasing
    result["classes"]  # int64 (D,), ids 1..K into predictor.class_names (0 = background)

The weights are the course's checkpoint (``./download_checkpoint.sh``) or a folder holding
``detector_rpn.weights.h5`` and ``detector_head.weights.h5`` (what ``TwoStageDetector.save``
writes). A folder that ``python -m workshop train detector --dataset`` wrote also holds
``detector.json`` (:data:`DETECTOR_INFO`): the data set's class names and the square input
size images are letterboxed to (:func:`workshop.toolkit.datasets.letterbox`; boxes come back
in the pixels of the image as read). The stages are the reference's
(:func:`workshop.course.load_detector`) with a learner's working functions in their place
(:mod:`workshop.toolkit.stages`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workshop.data.synthetic import CLASS_NAMES

from .stages import LearnerStages, learner_stages, reference_only

WEIGHT_FILES = ("detector_rpn.weights.h5", "detector_head.weights.h5")
DETECTOR_INFO = "detector.json"   # {"class_names": ["background", ...], "input_size": 128, "resize": "letterbox"}


class ToolkitError(ValueError):
    """Bad input to a command (a path, an option, a checkpoint); the message says what to do."""


def parse_classes(text: str | None, class_names: Sequence[str] = CLASS_NAMES) -> list[int] | None:
    """``"circle,ring"`` -> ``[1, 5]`` (ids into ``class_names``); None for no filter.
    Raises :class:`ToolkitError` naming unknown classes and listing the known ones."""
    if text is None or not text.strip():
        return None
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    known = list(class_names[1:])
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise ToolkitError(f"--classes: unknown {', '.join(map(repr, unknown))}; the detector's classes "
                           f"are {', '.join(known)}")
    return sorted({class_names.index(t) for t in wanted})


def checkpoint_dir(directory: str | Path | None) -> Path:
    """The folder to load weights from: ``directory`` if it holds :data:`WEIGHT_FILES`, else the
    course's verified checkpoint. Raises :class:`ToolkitError` saying what is missing."""
    if directory is None:
        from workshop.checkpoint import CheckpointError, ready_dir

        try:
            return ready_dir()
        except CheckpointError as err:
            raise ToolkitError(str(err)) from None
    d = Path(directory)
    if not d.is_dir():
        raise ToolkitError(f"--checkpoint {d}: no such folder")
    missing = [f for f in WEIGHT_FILES if not (d / f).is_file()]
    if missing:
        raise ToolkitError(f"--checkpoint {d}: no detector weights there (missing {', '.join(missing)})")
    return d


def checkpoint_info(directory: Path) -> dict | None:
    """What ``directory``'s :data:`DETECTOR_INFO` says (``class_names`` with ``"background"``
    first, ``input_size`` a multiple of 8), or None when it has none (the course's detector:
    :data:`~workshop.data.synthetic.CLASS_NAMES`, images at their own size). Raises
    :class:`ToolkitError` for a file that says something else."""
    import json

    path = Path(directory) / DETECTOR_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        names, size = info["class_names"], info["input_size"]
        ok = (isinstance(names, list) and len(names) >= 2 and names[0] == "background"
              and all(isinstance(n, str) for n in names) and isinstance(size, int) and size >= 32 and size % 8 == 0)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ToolkitError(f"--checkpoint {directory}: {DETECTOR_INFO} should hold class_names (['background', "
                           "...]) and input_size (a multiple of 8), as `workshop train detector --dataset` writes it")
    return info


def class_names_of(checkpoint: str | Path | None) -> tuple[str, ...]:
    """The class names (``"background"`` first) of the detector in ``checkpoint`` (None: the
    course's checkpoint)."""
    info = None if checkpoint is None else checkpoint_info(checkpoint_dir(checkpoint))
    return CLASS_NAMES if info is None else tuple(info["class_names"])


def load_keras_detector(weights: Path, **replacements):
    """The Keras detector of the checkpoint folder ``weights`` (its classes and input size from
    :func:`checkpoint_info`) running the reference stages, or ``replacements`` in their place."""
    from workshop.course import load_detector, reference_stages

    info = checkpoint_info(weights)
    if info is None:
        return load_detector(weights, **replacements)
    from workshop.models.detector import DetectorConfig
    from workshop.models.detector import load_detector as load

    size = int(info["input_size"])
    config = DetectorConfig(num_classes=len(info["class_names"]) - 1, image_size=(size, size))
    return load(weights, reference_stages(**replacements), config)


class Predictor:
    """One loaded detector with its filters; :meth:`predict` may be called from several threads
    (calls run one at a time)."""

    def __init__(self, detector, checkpoint: Path, stages: LearnerStages, min_score: float,
                 max_detections: int, classes: list[int] | None,
                 class_names: Sequence[str] = CLASS_NAMES, input_size: int | None = None):
        self.detector = detector
        self.checkpoint = checkpoint
        self.stages = stages
        self.min_score = float(min_score)
        self.max_detections = int(max_detections)
        self.classes = classes
        self.class_names = tuple(class_names)
        self.input_size = input_size       # letterbox images to this square first (None: as they are)
        self._lock = threading.Lock()

    def predict(self, rgb: np.ndarray) -> dict:
        """Detections on one uint8 RGB ``(H, W, 3)`` image: ``boxes`` float64 ``(D, 4)`` xyxy,
        ``scores`` float64 ``(D,)`` (decreasing, each above ``min_score``), ``classes`` int64
        ``(D,)``; at most ``max_detections``, only the ``classes`` asked for."""
        if self.input_size:
            from .datasets import letterbox, unletterbox

            with self._lock:
                result = self.detector.detect(letterbox(rgb, None, self.input_size)[0][None])[0]
            boxes = unletterbox(result["boxes"], rgb.shape[0], rgb.shape[1], self.input_size)
        else:
            with self._lock:
                result = self.detector.detect(rgb[None])[0]
            boxes = np.asarray(result["boxes"], np.float64).reshape(-1, 4)
        scores = np.asarray(result["scores"], np.float64).reshape(-1)
        classes = np.asarray(result["classes"], np.int64).reshape(-1)
        keep = scores > self.min_score
        if self.classes is not None:
            keep &= np.isin(classes, self.classes)
        order = np.flatnonzero(keep)
        order = order[np.argsort(-scores[order], kind="stable")][: self.max_detections]
        return {"boxes": boxes[order], "scores": scores[order], "classes": classes[order]}

    def as_json(self, result: dict, digits: int = 2) -> list[dict]:
        """A result as the API's list of ``{"box": [x1, y1, x2, y2], "score": s, "class": name,
        "class_id": k}`` (box rounded to ``digits`` decimals, score to 4)."""
        return [{"box": [round(float(v), digits) for v in b], "score": round(float(s), 4),
                 "class": self.class_names[int(c)], "class_id": int(c)}
                for b, s, c in zip(result["boxes"], result["scores"], result["classes"])]

    def categories(self) -> list[dict]:
        """COCO ``categories``: ``[{"id": 1, "name": "circle"}, ...]``."""
        return [{"id": i, "name": n} for i, n in enumerate(self.class_names) if i > 0]

    def describe(self) -> list[str]:
        """Lines saying which weights and whose stages run."""
        mine = sum(c.yours for c in self.stages.choices)
        source = "model (TensorFlow Lite)" if self.checkpoint.suffix == ".tflite" else "checkpoint"
        own = [] if self.class_names == CLASS_NAMES else [
            f"classes: {', '.join(self.class_names[1:])} (images letterboxed to {self.input_size} x "
            f"{self.input_size})"]
        return [f"{source}: {self.checkpoint}", *own,
                f"stages ({mine} yours, {len(self.stages.choices) - mine} the reference's):",
                *self.stages.lines()]


def load_predictor(checkpoint: str | Path | None = None, notebooks: Sequence[str | Path] = (),
                   min_score: float = 0.05, max_detections: int = 100,
                   classes: list[int] | None = None, model: str | Path | None = None) -> Predictor:
    """The course's detector (weights from :func:`checkpoint_dir`, or the TensorFlow Lite model
    ``model`` that ``python -m workshop export`` writes), running a learner's stages
    from ``notebooks`` where they work and the reference elsewhere, keeping detections scoring
    above ``min_score`` (also the detector's own score threshold before its NMS), at most
    ``max_detections`` per image, of ``classes`` (ids) only if given.

    Raises :class:`ToolkitError` for a bad option, checkpoint or notebook.
    """
    if not 0.0 <= min_score < 1.0:
        raise ToolkitError(f"--min-score: expected a score in [0, 1), got {min_score}")
    if max_detections < 1:
        raise ToolkitError(f"--max-detections: expected at least 1, got {max_detections}")
    if model is not None and checkpoint is not None:
        raise ToolkitError("--model and --checkpoint: give one (a .tflite model holds its own weights)")
    weights = checkpoint_dir(checkpoint) if model is None else Path(model)
    info = checkpoint_info(weights) if model is None else None
    from .stages import StagesError

    try:
        stages = learner_stages(notebooks) if notebooks else reference_only()
    except StagesError as err:
        raise ToolkitError(str(err)) from None
    from workshop.course import import_tensorflow

    import_tensorflow()
    if model is not None:
        from .tflite import load_tflite_detector

        detector = load_tflite_detector(model, **stages.replacements)
    else:
        detector = load_keras_detector(weights, **stages.replacements)
    # the detector's own cut-offs: its score threshold before NMS and the NMS's output size
    # (room for every class when only some are kept, so the filter leaves max_detections)
    cap = max_detections if classes is None else max_detections * detector.config.num_classes
    config = dataclasses.replace(detector.config, score_threshold=float(min_score), max_detections=int(cap))
    detector = type(detector)(config, stages=detector.stages, rpn=detector.rpn, head=detector.head)
    if info is None:
        return Predictor(detector, weights, stages, min_score, max_detections, classes)
    return Predictor(detector, weights, stages, min_score, max_detections, classes,
                     class_names=info["class_names"], input_size=int(info["input_size"]))
