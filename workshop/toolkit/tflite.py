"""The detector's networks as TensorFlow Lite, and a detector that runs them.

**One** ``.tflite`` file holds both networks as two signatures (a frozen graph each, no
variables):

==============  ==========================================  ==========================================
signature       input (float32)                             outputs (float32)
==============  ==========================================  ==========================================
``rpn``         ``image`` ``(1, H, W, 3)`` in ``[0, 1]``     features ``(1, H/8, W/8, 96)``, objectness
                (H, W any multiple of 8; one image a call)  ``(1, h*w*A)``, deltas ``(1, h*w*A, 4)``
``box_head``    ``pooled`` ``(R, 7, 7, 96)`` (R any)         class logits ``(R, K+1)``, box deltas
                                                            ``(R, K, 4)``
==============  ==========================================  ==========================================

Everything between them (anchors, proposals, RoI align, decode, NMS) stays the numpy stages
the Keras detector runs: :func:`load_tflite_detector` gives a
:class:`~workshop.models.detector.TwoStageDetector` whose ``rpn`` and ``head`` are
``tf.lite.Interpreter`` signature runners and whose stages are the reference's (or yours), so
``detect`` is the same code with another engine under it. Boxes are float ``(N, 4)`` xyxy in
input-image pixels (see :mod:`workshop.conventions`).

``int8=True`` is full-integer post-training quantisation: weights and activations int8
(``TFLITE_BUILTINS_INT8`` only, so conversion fails rather than leave a float op behind), the
activation ranges calibrated on ``calibration`` synthetic *training* scenes (the ``rpn``
signature on their images, the ``box_head`` on the regions the float detector pools from its
own proposals on them). Inputs and outputs stay **float32**: a quantize op after the input and
a dequantize op before each output, inside the model. Why: the numpy stages need float
objectness, deltas and features anyway, so int8 outputs would only move the dequantisation
into Python; and int8 outputs would snap the box deltas to one scale shared by all
``h*w*A`` anchors (the largest delta sets the step), where the float output keeps what the
int8 tensor holds without a second rounding at the boundary. The cost is two cheap ops per
signature.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .detection import DETECTOR_INFO, ToolkitError, checkpoint_dir, checkpoint_info

SIGNATURES = ("rpn", "box_head")
TRAIN_SEED = 1          # workshop.train.SEEDS["train"]: calibration scenes come from the training split


@dataclasses.dataclass
class ExportInfo:
    """What :func:`export_tflite` wrote."""

    path: Path
    int8: bool
    calibration: int
    size_bytes: int
    seconds: float
    checkpoint: Path

    def line(self) -> str:
        kind = f"int8 (calibrated on {self.calibration} training scenes)" if self.int8 else "float32"
        return (f"{self.path}: {kind}, {self.size_bytes / 2**20:.2f} MB, signatures rpn + box_head, "
                f"converted in {self.seconds:.1f} s from {self.checkpoint}")


def _writable_target(output: str | Path) -> Path:
    out = Path(output)
    if out.suffix != ".tflite":
        raise ToolkitError(f"--output {out}: expected a file name ending in .tflite")
    if out.is_dir():
        raise ToolkitError(f"--output {out}: is a folder; give a file name ending in .tflite")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ToolkitError(f"--output {out}: no such folder {parent}")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ToolkitError(f"--output {out}: cannot write there (permission denied)")
    return out


def _frozen_module(detector):
    """A ``tf.Module`` holding the two networks as frozen (variable-free) concrete functions."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    c = detector.config
    channels = int(detector.head.inputs[0].shape[-1])
    rpn, head = detector.rpn, detector.head

    @tf.function(input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32, name="image")])
    def rpn_fn(image):
        features, objectness, deltas = rpn(image, training=False)
        return {"features": features, "objectness": objectness, "deltas": deltas}

    @tf.function(input_signature=[tf.TensorSpec((None, c.pool_size, c.pool_size, channels), tf.float32,
                                                name="pooled")])
    def head_fn(pooled):
        logits, deltas = head(pooled, training=False)
        return {"class_logits": logits, "box_deltas": deltas}

    # multi-signature conversion keeps variables as resources, which calibration cannot read:
    # freeze each function first, so the saved model holds constants only
    module = tf.Module()
    module.rpn = convert_variables_to_constants_v2(rpn_fn.get_concrete_function())
    module.box_head = convert_variables_to_constants_v2(head_fn.get_concrete_function())
    return module


def calibration_data(detector, n: int, seed: int = TRAIN_SEED):
    """``n`` synthetic training scenes: float32 images ``(n, H, W, 3)`` in ``[0, 1]`` and, per
    scene, the float32 ``(R, 7, 7, C)`` regions the float detector pools from its proposals."""
    from workshop.data.synthetic import make_detection_dataset

    c = detector.config
    images = make_detection_dataset(n, seed, c.image_size).images.astype(np.float32) / 255.0
    pooled = []
    for start in range(0, n, 16):
        features, proposals = detector.propose(images[start:start + 16])
        for i, (rois, _) in enumerate(proposals):
            if len(rois):
                pooled.append(np.asarray(detector.stages.roi_align(
                    features[i].astype(np.float64), rois, (c.pool_size, c.pool_size), 1.0 / c.stride,
                    sampling_ratio=c.sampling_ratio), np.float32))
    return images, pooled


def convert(detector, int8: bool = False, calibration: int = 64) -> bytes:
    """The ``.tflite`` flatbuffer of ``detector``'s networks (signatures ``rpn``, ``box_head``)."""
    from workshop.course import import_tensorflow, stderr_silenced

    tf = import_tensorflow()
    module = _frozen_module(detector)
    with tempfile.TemporaryDirectory(prefix="workshop-tflite-") as saved:
        tf.saved_model.save(module, saved, signatures={"rpn": module.rpn, "box_head": module.box_head})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(SIGNATURES))
        if int8:
            images, pooled = calibration_data(detector, calibration)

            def representative():
                for i in range(len(images)):
                    yield "rpn", {"image": images[i:i + 1]}
                for p in pooled:
                    yield "box_head", {"pooled": p}

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.float32
            converter.inference_output_type = tf.float32
        with stderr_silenced():
            return converter.convert()


def export_tflite(output: str | Path, checkpoint: str | Path | None = None, int8: bool = False,
                  calibration: int = 64) -> ExportInfo:
    """Convert the checkpoint's detector (``checkpoint``: a folder as ``TwoStageDetector.save``
    writes it; default the course's) into ``output`` (``.tflite``, written atomically).
    Raises :class:`ToolkitError` for a missing checkpoint, an unwritable output or a bad
    ``calibration`` count."""
    if int8 and not 1 <= int(calibration) <= 10_000:
        raise ToolkitError(f"--calibration: expected 1 to 10000 scenes, got {calibration}")
    out = _writable_target(output)
    weights = checkpoint_dir(checkpoint)
    if checkpoint_info(weights) is not None:
        raise ToolkitError(f"--checkpoint {weights}: a detector trained on your own data set (its classes in "
                           f"{DETECTOR_INFO}); export converts the course's detector only (run it with "
                           "`workshop predict --checkpoint`)")
    from workshop.course import import_tensorflow, load_detector

    import_tensorflow()
    start = time.perf_counter()
    detector = load_detector(weights)
    flatbuffer = convert(detector, int8=int8, calibration=int(calibration))
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(flatbuffer)
        os.replace(tmp, out)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ToolkitError(f"--output {out}: cannot write ({err.strerror or err})") from None
    return ExportInfo(out, bool(int8), int(calibration) if int8 else 0, len(flatbuffer),
                      time.perf_counter() - start, weights)


# -- running it ----------------------------------------------------------------------------------
def interpreter(path: str | Path, num_threads: int | None = None):
    """A ``tf.lite.Interpreter`` on ``path`` with the two signatures checked. Raises
    :class:`ToolkitError` for a missing file, not a TFLite model, or other signatures."""
    p = Path(path)
    if not p.is_file():
        raise ToolkitError(f"--model {p}: no such file")
    from workshop.course import import_tensorflow

    tf = import_tensorflow()
    threads = num_threads if num_threads is not None else (os.cpu_count() or 1)
    try:
        with warnings.catch_warnings():     # "tf.lite.Interpreter is deprecated" (LiteRT): still the API here
            warnings.simplefilter("ignore")
            interp = tf.lite.Interpreter(model_path=str(p), num_threads=threads)
    except (ValueError, RuntimeError) as err:
        raise ToolkitError(f"--model {p}: not a TensorFlow Lite model ({str(err).splitlines()[0]})") from None
    found = interp.get_signature_list()
    if set(found) != set(SIGNATURES):
        raise ToolkitError(f"--model {p}: expected the signatures {', '.join(SIGNATURES)} (what "
                           f"`python -m workshop export` writes), found {', '.join(found) or 'none'}")
    return interp


class _Runner:
    """A signature runner called like the Keras model it replaces: ``runner(x, training=False)``
    -> numpy arrays in the Keras model's output order (told apart by rank, not by name)."""

    def __init__(self, interp, key: str, input_name: str, order: tuple[int, ...]):
        self.runner = interp.get_signature_runner(key)
        self.key, self.input_name, self.order = key, input_name, order

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outputs = self.runner(**{self.input_name: np.ascontiguousarray(x, np.float32)})
        by_rank = {v.ndim: np.array(v) for v in outputs.values()}
        return [by_rank[r] for r in self.order]


class TFLiteRPN(_Runner):
    """Backbone + RPN head: images ``(B, H, W, 3)`` -> features, objectness, deltas (one image
    a call to the interpreter, stacked)."""

    def __init__(self, interp):
        super().__init__(interp, "rpn", "image", (4, 2, 3))

    def __call__(self, images, training: bool = False):
        x = np.asarray(images, np.float32)
        per_image = [self._run(x[i:i + 1]) for i in range(x.shape[0])]
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*per_image))


class TFLiteHead(_Runner):
    """Box head: pooled ``(R, 7, 7, C)`` -> class logits ``(R, K+1)``, box deltas ``(R, K, 4)``."""

    def __init__(self, interp):
        super().__init__(interp, "box_head", "pooled", (2, 3))

    def __call__(self, pooled, training: bool = False):
        return tuple(self._run(np.asarray(pooled, np.float32)))


def load_tflite_detector(path: str | Path, num_threads: int | None = None, config=None, **replacements):
    """A :class:`~workshop.models.detector.TwoStageDetector` running ``path``'s networks in
    ``tf.lite.Interpreter`` and the reference stages (or ``replacements``, e.g.
    ``roi_align=roi_align_numpy``) between them, as ``load_detector`` does for the Keras weights.
    ``config``: the :class:`DetectorConfig` the model was exported with (default the course's)."""
    from workshop.course import reference_stages
    from workshop.models.detector import DetectorConfig, TwoStageDetector

    interp = interpreter(path, num_threads)
    return TwoStageDetector(config or DetectorConfig(), stages=reference_stages(**replacements),
                            rpn=TFLiteRPN(interp), head=TFLiteHead(interp))
