"""``python -m workshop export --tflite [--int8] --output OUT.tflite``: the detector as TensorFlow Lite.

Writes **one** ``.tflite`` file with two signatures, ``rpn`` (backbone + RPN head: one float32
image ``(1, H, W, 3)`` in ``[0, 1]`` -> features, objectness, deltas) and ``box_head`` (pooled
regions ``(R, 7, 7, 96)`` -> class logits, box deltas); the numpy stages between them (anchors,
proposals, RoI align, decode, NMS) are not in the file: ``workshop predict --model OUT.tflite``
(and ``serve``) run them around the interpreter as the Keras detector does
(:mod:`workshop.toolkit.tflite`).

``--int8``: full-integer quantisation (int8 weights and activations, float32 input and outputs;
why float at the boundary: see :mod:`workshop.toolkit.tflite`), calibrated on ``--calibration N``
synthetic training scenes (default 64).

``--report``: exports float32 and int8 into a temporary folder and prints, for the Keras
float32 detector and both TFLite models side by side on the same held-out synthetic scenes
(the test split of ``workshop.train``, ``--scenes N``, default 300: the scenes of the
checkpoint's own figures), the model size, the CPU latency per image (median over warm
single-image calls, whole pipeline and networks only) and the COCO mAP and AP50.

``--bench [--quick]``: frames per second of four ways to run the detector on held-out scenes and
on the shipped photos, and training steps per second on one and two logical CPU devices
(:mod:`workshop.toolkit.benchmark`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .detection import ToolkitError, checkpoint_dir

TEST_SEED = 3        # workshop.train.SEEDS["test"]: the held-out scenes of the checkpoint's figures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workshop export",
        description="Convert the detector's networks to TensorFlow Lite: ONE .tflite file with two "
                    "signatures, 'rpn' (backbone + RPN head) and 'box_head'. The numpy stages between "
                    "them (anchors, proposals, RoI align, decode, NMS) run around the interpreter: "
                    "python -m workshop predict --model OUT.tflite ...")
    p.add_argument("--tflite", action="store_true", help="TensorFlow Lite (the only format; required)")
    p.add_argument("--int8", action="store_true",
                   help="full-integer quantisation: int8 weights and activations, float32 input/outputs")
    p.add_argument("--output", metavar="OUT.tflite", help="the model file to write")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="folder with detector_rpn.weights.h5 and detector_head.weights.h5 (default: the course's checkpoint)")
    p.add_argument("--calibration", type=int, default=64, metavar="N",
                   help="--int8: calibrate on N synthetic training scenes (default 64)")
    p.add_argument("--report", action="store_true",
                   help="export float32 and int8 (into a temporary folder) and print size, latency and "
                        "COCO mAP / AP50 of Keras float32, TFLite float32 and TFLite int8 on held-out scenes")
    p.add_argument("--scenes", type=int, default=None, metavar="N",
                   help="--report: held-out synthetic scenes to evaluate on (default 300); --bench: to time "
                        "(default 100)")
    p.add_argument("--bench", action="store_true",
                   help="frames per second of Keras, TFLite float32, TFLite int8 and Keras with stages from "
                        "notebooks on held-out scenes and on the shipped photos, and training steps per second "
                        "on one and on two logical CPU devices (MirroredStrategy), side by side; a few minutes")
    p.add_argument("--quick", action="store_true", help="--bench: a handful of images and steps (seconds, for tests)")
    p.add_argument("--stages", metavar="NOTEBOOK", action="append", default=[],
                   help="--bench: the notebooks whose stages the last row runs (default the solution notebooks "
                        "of chapters 3 and 6); repeatable")
    p.add_argument("--latency-images", type=int, default=30, metavar="N",
                   help="--report: single-image calls timed per model, after 3 warm-up calls (default 30)")
    return p


# -- the report ----------------------------------------------------------------------------------
def _median_ms(fn, items, warmup: int = 3) -> float:
    for item in items[:warmup]:
        fn(item)
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _networks_only(detector):
    """One image through the networks alone: the RPN, then the box head on 100 regions."""
    c = detector.config
    channels = int(np.asarray(detector.rpn(np.zeros((1, *c.image_size, 3), np.float32))[0]).shape[-1])
    pooled = np.random.default_rng(0).random((c.test_post_nms, c.pool_size, c.pool_size, channels),
                                            dtype=np.float32)

    def run(image):
        detector.rpn(image[None].astype(np.float32) / 255.0, training=False)
        detector.head(pooled, training=False)
    return run


def measure(detector, dataset, latency_images: int) -> dict:
    """mAP, AP50 (COCO, the course's evaluation) and median warm latencies of ``detector``."""
    from workshop.train import evaluate_detector

    images = list(dataset.images[:max(latency_images, 4)])
    full = _median_ms(lambda im: detector.detect(im[None]), images)
    nets = _median_ms(_networks_only(detector), images)
    figures = evaluate_detector(detector, dataset)
    return {"map": figures["map"], "ap50": figures["ap50"], "latency_ms": full, "networks_ms": nets}


def report(checkpoint: str | None, scenes: int, calibration: int, latency_images: int, say=print) -> list[dict]:
    """Export float32 and int8, measure the three detectors side by side; returns the rows."""
    from workshop.course import import_tensorflow, load_detector
    from workshop.data.synthetic import make_detection_dataset

    from .tflite import export_tflite, load_tflite_detector

    if scenes < 1:
        raise ToolkitError(f"--scenes: expected at least 1, got {scenes}")
    weights = checkpoint_dir(checkpoint)
    import_tensorflow()
    dataset = make_detection_dataset(scenes, TEST_SEED, (128, 128))
    rows = []
    with tempfile.TemporaryDirectory(prefix="workshop-export-") as tmp:
        float_info = export_tflite(Path(tmp) / "detector.tflite", weights)
        int8_info = export_tflite(Path(tmp) / "detector-int8.tflite", weights, int8=True, calibration=calibration)
        for info in (float_info, int8_info):
            say(info.line())
        keras_mb = sum((weights / f).stat().st_size for f in ("detector_rpn.weights.h5", "detector_head.weights.h5"))
        models = [("Keras float32", keras_mb, lambda: load_detector(weights)),
                  ("TFLite float32", float_info.size_bytes, lambda: load_tflite_detector(float_info.path)),
                  (f"TFLite int8 ({calibration} calibration scenes)", int8_info.size_bytes,
                   lambda: load_tflite_detector(int8_info.path))]
        for name, size, load in models:
            start = time.perf_counter()
            row = {"model": name, "size_mb": size / 2**20, **measure(load(), dataset, latency_images)}
            say(f"  measured {name} in {time.perf_counter() - start:.0f} s")
            rows.append(row)
    return rows


def format_table(rows: list[dict], scenes: int) -> str:
    lines = [f"| model | size (MB) | latency / image, median warm (ms) | networks only (ms) | "
             f"mAP ({scenes} scenes) | AP50 |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['size_mb']:.2f} | {r['latency_ms']:.1f} | {r['networks_ms']:.1f} | "
              f"{r['map']:.4f} | {r['ap50']:.4f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.bench:
            from . import benchmark

            sizes = benchmark.QUICK if args.quick else benchmark.Sizes()
            if args.scenes is not None:
                sizes = dataclasses.replace(sizes, scenes=args.scenes)
            if sizes.scenes < 1:
                raise ToolkitError(f"--scenes: expected at least 1, got {sizes.scenes}")
            print(benchmark.format_tables(benchmark.bench(args.checkpoint, sizes, args.stages), sizes))
            return 0
        if args.report:
            scenes = 300 if args.scenes is None else args.scenes
            rows = report(args.checkpoint, scenes, args.calibration, args.latency_images)
            print(format_table(rows, scenes))
            if not args.output:
                return 0
        if not args.tflite:
            raise ToolkitError("say which format: --tflite (the only one)")
        if not args.output:
            raise ToolkitError("--output OUT.tflite: where to write the model")
        from .tflite import export_tflite

        info = export_tflite(args.output, args.checkpoint, int8=args.int8, calibration=args.calibration)
    except ToolkitError as err:
        print(f"export: {err}", file=sys.stderr)
        return 2
    print(info.line())
    return 0
