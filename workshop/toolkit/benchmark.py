"""``python -m workshop export --bench [--quick]``: the detector's speed on this machine, side by side.

Inference, frames per second (one image a call, the whole ``detect``: networks and numpy stages,
after two warm-up calls), for the same trained weights run four ways:

    Keras float32                 the checkpoint as ``workshop predict`` runs it
    TFLite float32, TFLite int8   exported into a temporary folder (``workshop export``)
    Keras + notebook stages       the Keras detector with the stages taken from solution notebooks
                                  (``workshop predict --stages``: by default chapter 3's
                                  ``batched_nms`` and chapter 6's ``roi_align``)

each on the held-out synthetic scenes (128 x 128, the test split of the checkpoint's figures) and
on the shipped photographs (:func:`workshop.data.load_photos`, about 320 x 213 pixels, run at
their own size).

Training, steps per second of the course detector's training step (global batch 8, 128 x 128
synthetic scenes, from the checkpoint's backbone, after warm-up steps) on one device and under
``MirroredStrategy`` over two logical CPU devices
(``tf.config.set_logical_device_configuration``): measured in a child process, since devices are
fixed once TensorFlow starts.

All on this machine's CPU, shared with whatever else runs: the numbers are for comparing rows of
one run, not runs of different days. ``--quick`` measures a handful of images and steps (for
tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .detection import ToolkitError, checkpoint_dir

TEST_SEED = 3           # workshop.train.SEEDS["test"]: the held-out scenes
TRAIN_SEED = 1          # workshop.train.SEEDS["train"]
GLOBAL_BATCH = 8
DEFAULT_STAGES = ("solutions/03_iou_nms.ipynb", "solutions/06_roi_pooling.ipynb")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much a run measures: held-out scenes, passes over the photos, training steps timed
    after warm-up ones, int8 calibration scenes."""

    scenes: int = 100
    photo_passes: int = 5
    train_steps: int = 15
    train_warmup: int = 3
    calibration: int = 64


QUICK = Sizes(scenes=6, photo_passes=1, train_steps=2, train_warmup=1, calibration=4)


def frames_per_second(detector, images, warmup: int = 2) -> float:
    """Images per second of ``detector.detect`` on uint8 ``(H, W, 3)`` images, one a call, after
    ``warmup`` untimed calls (the first images again)."""
    for image in images[:warmup]:
        detector.detect(image[None])
    start = time.perf_counter()
    for image in images:
        detector.detect(image[None])
    return len(images) / (time.perf_counter() - start)


def default_stage_notebooks() -> list[Path]:
    """The solution notebooks whose stages the "notebook stages" row runs (those present)."""
    root = Path(__file__).resolve().parents[2]
    return [root / p for p in DEFAULT_STAGES if (root / p).is_file()]


def inference_rows(weights: Path, sizes: Sizes, notebooks, say=print) -> list[dict]:
    """``[{"detector", "scenes_fps", "photos_fps"}, ...]`` for the four ways of running it."""
    from workshop.course import load_detector
    from workshop.data import load_photos
    from workshop.data.synthetic import make_detection_dataset

    from .stages import StagesError, learner_stages
    from .tflite import export_tflite, load_tflite_detector

    scenes = list(make_detection_dataset(sizes.scenes, TEST_SEED, (128, 128)).images)
    photos = [p.image for p in load_photos()] * sizes.photo_passes
    try:
        stages = learner_stages(notebooks)
    except StagesError as err:
        raise ToolkitError(str(err)) from None
    mine = [c for c in stages.choices if c.yours]
    if not mine:
        raise ToolkitError("--stages: no working stage in " + ", ".join(map(str, notebooks)))
    say("notebook stages: " + "; ".join(c.source for c in mine))
    rows = []
    with tempfile.TemporaryDirectory(prefix="workshop-bench-") as tmp:
        exported = {}
        for int8 in (False, True):
            info = export_tflite(Path(tmp) / f"detector{'-int8' if int8 else ''}.tflite", weights, int8=int8,
                                 calibration=sizes.calibration)
            say(info.line())
            exported[int8] = info.path
        engines = [("Keras float32", lambda: load_detector(weights)),
                   ("TFLite float32", lambda: load_tflite_detector(exported[False])),
                   (f"TFLite int8 ({sizes.calibration} calibration scenes)",
                    lambda: load_tflite_detector(exported[True])),
                   (f"Keras float32 + notebook stages ({', '.join(c.stage for c in mine)})",
                    lambda: load_detector(weights, **stages.replacements))]
        for name, load in engines:
            detector = load()
            start = time.perf_counter()
            rows.append({"detector": name, "scenes_fps": frames_per_second(detector, scenes),
                         "photos_fps": frames_per_second(detector, photos)})
            say(f"  measured {name} in {time.perf_counter() - start:.0f} s")
    return rows


# -- training speed (in a child process) ---------------------------------------------------------
def _train_speed(devices: int, steps: int, warmup: int, weights: Path) -> dict:
    """Steps per second of the detector's training step on ``devices`` logical CPU devices (1:
    the default strategy; 2: ``MirroredStrategy``). TensorFlow must be configured already."""
    import keras

    from workshop.course import reference_stages, reference_training_stages
    from workshop.data.synthetic import make_detection_dataset
    from workshop.models.cnn import build_backbone
    from workshop.models.detector import DetectorConfig, TwoStageDetector
    from workshop.models.detector_training import build_training_model, pad_ground_truth
    from workshop.train import make_strategy

    keras.utils.set_random_seed(0)
    config = DetectorConfig()
    data = make_detection_dataset((steps + warmup) * GLOBAL_BATCH, TRAIN_SEED, config.image_size)
    strategy = make_strategy("default" if devices == 1 else "mirrored")
    with strategy.scope():
        backbone = build_backbone()
        backbone.load_weights(weights / "backbone.weights.h5")
        detector = TwoStageDetector(config, backbone=backbone, stages=reference_stages())
        trainer = build_training_model(detector, reference_training_stages(), 0, per_image_seeds=True)
        trainer.compile(keras.optimizers.Adam(1e-3), run_eagerly=False)
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    x = data.images.astype(np.float32) / 255.0
    y = pad_ground_truth(data.boxes, data.classes)
    trainer.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    timed = ends[warmup - 1:]                   # from the end of the last warm-up step
    return {"devices": devices, "replicas": int(strategy.num_replicas_in_sync), "steps": len(timed) - 1,
            "steps_per_s": (len(timed) - 1) / (timed[-1] - timed[0])}


def _train_speed_child(argv: list[str]) -> None:
    """``python -m workshop.toolkit.benchmark STEPS WARMUP WEIGHTS``: two logical CPUs, then both
    measurements; prints one ``RESULT`` JSON line."""
    steps, warmup, weights = int(argv[0]), int(argv[1]), Path(argv[2])
    from workshop.course import import_tensorflow

    tf = import_tensorflow()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    results = [_train_speed(d, steps, warmup, weights) for d in (1, 2)]
    print("RESULT " + json.dumps(results), flush=True)


def training_rows(weights: Path, sizes: Sizes) -> list[dict]:
    """``[{"training", "steps_per_s", "images_per_s"}, ...]`` for one device and two logical CPU
    devices, measured in a child process."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "workshop.toolkit.benchmark", str(sizes.train_steps),
                           str(sizes.train_warmup), str(weights)], capture_output=True, text=True,
                          env=env, timeout=1800, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise ToolkitError("the training measurement failed:\n" + proc.stderr[-2000:])
    rows = []
    for r in json.loads(lines[-1][len("RESULT "):]):
        what = ("one device (default strategy)" if r["devices"] == 1 else
                f"MirroredStrategy, {r['replicas']} logical CPU devices")
        rows.append({"training": f"{what}, global batch {GLOBAL_BATCH}", "steps_per_s": r["steps_per_s"],
                     "images_per_s": r["steps_per_s"] * GLOBAL_BATCH, "steps": r["steps"]})
    return rows


# -- the command ---------------------------------------------------------------------------------
def bench(checkpoint: str | None, sizes: Sizes, notebooks=None, say=print) -> dict:
    """Every measurement of the module docstring: ``{"inference": rows, "training": rows}``."""
    weights = checkpoint_dir(checkpoint)
    notebooks = [Path(p) for p in notebooks] if notebooks else default_stage_notebooks()
    if not notebooks:
        raise ToolkitError("--stages NOTEBOOK: no solution notebooks here to take stages from; name one")
    from workshop.course import import_tensorflow

    import_tensorflow()
    start = time.perf_counter()
    say("training speed (a child process: two logical CPU devices) ...")
    training = training_rows(weights, sizes)
    say(f"  measured in {time.perf_counter() - start:.0f} s")
    inference = inference_rows(weights, sizes, notebooks, say)
    return {"inference": inference, "training": training}


def format_tables(result: dict, sizes: Sizes) -> str:
    photos = 4 * sizes.photo_passes
    lines = [f"| detector (one image a call) | held-out scenes, {sizes.scenes} x 128 x 128 (frames/s) | "
             f"photos, {photos} x ~320 x 213 (frames/s) |", "|---|---:|---:|"]
    lines += [f"| {r['detector']} | {r['scenes_fps']:.1f} | {r['photos_fps']:.1f} |" for r in result["inference"]]
    lines += ["", f"| training step, 128 x 128 scenes | steps/s ({sizes.train_steps} timed after "
              f"{sizes.train_warmup} warm-up) | images/s |", "|---|---:|---:|"]
    lines += [f"| {r['training']} | {r['steps_per_s']:.2f} | {r['images_per_s']:.1f} |" for r in result["training"]]
    return "\n".join(lines)


if __name__ == "__main__":
    _train_speed_child(sys.argv[1:])
