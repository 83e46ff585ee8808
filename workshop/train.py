"""Training entry points: ``python -m workshop.train classifier|backbone|unet|detector|all``.

Each trains one of the course's models from the repository's own synthetic data, with Keras
progress bars, TensorBoard logs (``--logs``), ``ModelCheckpoint`` (best weights) and
``EarlyStopping``, deterministically under ``--seed``, and writes ``<name>*.weights.h5`` plus the
figures it reached into ``--out`` (default ``build/checkpoint``). ``--tiny`` trains for seconds
on a handful of images (for tests); the defaults reproduce the shipped checkpoint on a 2-core
CPU in a few minutes per model.

:func:`build_checkpoint` (``./download_checkpoint.sh --build``) retrains every model in a
subprocess and packs the course checkpoint from what it wrote.

The detector on a data set of your own (COCO or VOC, resumable) is
``python -m workshop train detector --dataset ...``: :mod:`workshop.toolkit.training`, which
takes this module's options too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS = ("classifier", "backbone", "unet", "detector")


@dataclass(frozen=True)
class Settings:
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    batch_size: int
    patience: int = 3


FULL = {
    "classifier": Settings(n_train=4000, n_val=500, n_test=1000, epochs=12, batch_size=64),
    "backbone": Settings(n_train=4000, n_val=500, n_test=1000, epochs=10, batch_size=64),
    "unet": Settings(n_train=1200, n_val=100, n_test=200, epochs=12, batch_size=16),
    "detector": Settings(n_train=1600, n_val=96, n_test=300, epochs=12, batch_size=8, patience=4),
}
TINY = Settings(n_train=16, n_val=8, n_test=8, epochs=1, batch_size=8)

UNET_SIZE = 128
UNET_DEPTH = 3
UNET_FILTERS = 16
CLASSIFIER_SIZE = 32
BACKBONE_SIZE = 64
SEEDS = {"train": 1, "val": 2, "test": 3}


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _callbacks(name: str, out: Path, logs: Path | None, patience: int, monitor: str = "val_loss"):
    import keras

    cbs = [keras.callbacks.ModelCheckpoint(str(out / f"{name}.best.weights.h5"), monitor=monitor,
                                           save_best_only=True, save_weights_only=True),
           keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True)]
    if logs is not None:
        cbs.append(keras.callbacks.TensorBoard(str(logs / name), histogram_freq=0))
    return cbs


def _images(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0


def train_classifier(out: Path, s: Settings, seed: int, logs: Path | None, verbose: int) -> dict:
    """The chapter-1 small CNN on the "source" task (digits 0-4, 32x32)."""
    import keras

    from .data.synthetic import make_classification_set
    from .models.cnn import build_small_cnn

    train = make_classification_set("source", s.n_train, SEEDS["train"] + seed, CLASSIFIER_SIZE, "train")
    val = make_classification_set("source", s.n_val, SEEDS["val"] + seed, CLASSIFIER_SIZE, "test")
    test = make_classification_set("source", s.n_test, SEEDS["test"] + seed, CLASSIFIER_SIZE, "test")
    model = build_small_cnn((CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3), len(train.class_names))
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(_images(train.images), train.labels, validation_data=(_images(val.images), val.labels),
              epochs=s.epochs, batch_size=s.batch_size, verbose=verbose,
              callbacks=_callbacks("classifier", out, logs, s.patience))
    _, acc = model.evaluate(_images(test.images), test.labels, verbose=0)
    model.save_weights(out / "classifier.weights.h5")
    return {"test_accuracy": float(acc), "n_test": s.n_test}


def _backbone_task(n: int, seed: int, split: str):
    """The backbone's pre-training task: digits 0-4 ("source") and the five shapes, 10 classes,
    64x64 (shapes make its features useful to the detector; digits 5-9 stay unseen for chapter 2)."""
    from .data.synthetic import make_classification_set

    digits = make_classification_set("source", n - n // 2, seed, BACKBONE_SIZE, split)
    shapes = make_classification_set("shapes", n // 2, seed + 100, BACKBONE_SIZE, split)
    images = np.concatenate([digits.images, shapes.images])
    labels = np.concatenate([digits.labels, shapes.labels + len(digits.class_names)])
    order = np.random.default_rng(seed).permutation(len(labels))
    return images[order], labels[order], tuple(digits.class_names) + tuple(shapes.class_names)


def train_backbone(out: Path, s: Settings, seed: int, logs: Path | None, verbose: int) -> dict:
    """The backbone, trained as a classifier on :func:`_backbone_task`; saves the trunk."""
    import keras

    from .models.cnn import build_backbone, build_classifier_on

    x_train, y_train, names = _backbone_task(s.n_train, SEEDS["train"] + seed, "train")
    x_val, y_val, _ = _backbone_task(s.n_val, SEEDS["val"] + seed, "test")
    x_test, y_test, _ = _backbone_task(s.n_test, SEEDS["test"] + seed, "test")
    backbone = build_backbone()
    model = build_classifier_on(backbone, len(names), (BACKBONE_SIZE, BACKBONE_SIZE, 3))
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(_images(x_train), y_train, validation_data=(_images(x_val), y_val),
              epochs=s.epochs, batch_size=s.batch_size, verbose=verbose,
              callbacks=_callbacks("backbone", out, logs, s.patience))
    _, acc = model.evaluate(_images(x_test), y_test, verbose=0)
    backbone.save_weights(out / "backbone.weights.h5")
    return {"pretraining_test_accuracy": float(acc), "classes": list(names), "n_test": s.n_test}


def train_unet(out: Path, s: Settings, seed: int, logs: Path | None, verbose: int) -> dict:
    """The UNet on the synthetic scenes' semantic masks (128x128, background + 5 classes)."""
    import keras

    from .data.synthetic import NUM_CLASSES, make_detection_dataset
    from .models.unet import build_unet
    from .reference.segmentation import confusion_matrix_numpy, segmentation_metrics_numpy

    train = make_detection_dataset(s.n_train, SEEDS["train"] + seed, UNET_SIZE)
    val = make_detection_dataset(s.n_val, SEEDS["val"] + seed, UNET_SIZE)
    test = make_detection_dataset(s.n_test, SEEDS["test"] + seed, UNET_SIZE)
    k = NUM_CLASSES + 1
    model = build_unet((UNET_SIZE, UNET_SIZE, 3), k, depth=UNET_DEPTH, base_filters=UNET_FILTERS)
    model.compile(keras.optimizers.Adam(2e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(_images(train.images), train.semantic_masks,
              validation_data=(_images(val.images), val.semantic_masks), epochs=s.epochs,
              batch_size=s.batch_size, verbose=verbose, callbacks=_callbacks("unet", out, logs, s.patience))
    pred = np.argmax(model.predict(_images(test.images), batch_size=s.batch_size, verbose=0), axis=-1)
    cm = confusion_matrix_numpy(test.semantic_masks.reshape(-1), pred.reshape(-1), k)
    accuracy, per_class, _, mean_iou = segmentation_metrics_numpy(cm)
    model.save_weights(out / "unet.weights.h5")
    return {"mean_iou": mean_iou, "per_class_iou": [float(v) for v in per_class],
            "pixel_accuracy": accuracy, "n_test": s.n_test}


def evaluate_detector(detector, dataset, batch_size: int = 16) -> dict:
    """COCO mAP and AP50 of ``detector`` on a :class:`DetectionDataset`, with the course's own
    evaluation and with pycocotools (the two must agree)."""
    from .reference.metrics_coco import (
        coco_evaluate,
        detections,
        ground_truths,
        pycocotools_evaluate,
    )

    gt_rows, dt_rows = [], []
    for start in range(0, len(dataset.images), batch_size):
        for j, det in enumerate(detector.detect(dataset.images[start:start + batch_size])):
            i = start + j
            gt_rows += [(i, int(c), b) for b, c in zip(dataset.boxes[i], dataset.classes[i])]
            dt_rows += [(i, int(c), b, float(sc)) for b, sc, c in zip(det["boxes"], det["scores"], det["classes"])]
    gt = ground_truths([r[0] for r in gt_rows], [r[1] for r in gt_rows],
                       np.array([r[2] for r in gt_rows]).reshape(-1, 4),
                       images=np.arange(len(dataset.images)),
                       classes=np.arange(1, detector.config.num_classes + 1))
    dt = detections([r[0] for r in dt_rows], [r[1] for r in dt_rows],
                    np.array([r[2] for r in dt_rows]).reshape(-1, 4), [r[3] for r in dt_rows])
    ours = coco_evaluate(gt, dt).stats
    theirs, _ = pycocotools_evaluate(gt, dt)
    return {"map": float(ours[0]), "ap50": float(ours[1]), "ap75": float(ours[2]),
            "pycocotools_map": float(theirs[0]), "pycocotools_ap50": float(theirs[1])}


STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str = "default"):
    """The ``tf.distribute`` strategy called ``name``: ``default`` (no distribution: the one
    device TensorFlow picks), ``mirrored`` (``MirroredStrategy``: one replica per local GPU, or
    per logical CPU device when there is no GPU), ``multiworker``
    (``MultiWorkerMirroredStrategy``: one process per worker, the cluster and this process's
    task in ``TF_CONFIG``, as TensorFlow documents it). Create it before anything else in
    TensorFlow runs (the multi-worker one starts the collective ops' server)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multiworker: set TF_CONFIG (the cluster's workers and this "
                             'process\'s task, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                             '"task": {"type": "worker", "index": 0}})')
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {name!r}")


def is_chief() -> bool:
    """True but on the non-chief workers of a ``TF_CONFIG`` cluster (the chief is the task
    ``chief``, else worker 0): only the chief writes the real output folder."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, cluster = config.get("task", {}), config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def train_detector(out: Path, s: Settings, seed: int, logs: Path | None, verbose: int,
                   backbone_weights: Path | None = None, strategy=None,
                   per_image_seeds: bool | None = None) -> dict:
    """The two-stage detector on synthetic scenes (128x128), from the trained backbone.

    ``strategy``: a ``tf.distribute`` strategy (:func:`make_strategy`); the networks are built
    and compiled in its scope, ``fit`` splits each global batch of ``s.batch_size`` images over
    its replicas. ``per_image_seeds`` (default: on under a distributing strategy, off otherwise,
    as the shipped checkpoint was trained): see :class:`~workshop.models.detector_training.TargetSampler`.
    """
    import contextlib

    import keras

    from .course import reference_stages, reference_training_stages
    from .data.synthetic import make_detection_dataset
    from .models.cnn import build_backbone
    from .models.detector import DetectorConfig, TwoStageDetector
    from .models.detector_training import build_training_model, pad_ground_truth

    config = DetectorConfig()
    train = make_detection_dataset(s.n_train, SEEDS["train"] + seed, config.image_size)
    val = make_detection_dataset(s.n_val, SEEDS["val"] + seed, config.image_size)
    test = make_detection_dataset(s.n_test, SEEDS["test"] + seed, config.image_size)
    replicas = 1 if strategy is None else int(strategy.num_replicas_in_sync)
    if per_image_seeds is None:
        per_image_seeds = replicas > 1 or (strategy is not None and "MultiWorker" in type(strategy).__name__)
    if s.batch_size % replicas:
        raise ValueError(f"batch size {s.batch_size} does not split over {replicas} replicas")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        backbone = build_backbone()
        if backbone_weights is not None and Path(backbone_weights).exists():
            backbone.load_weights(backbone_weights)
        detector = TwoStageDetector(config, backbone=backbone, stages=reference_stages())
        trainer = build_training_model(detector, reference_training_stages(), seed, per_image_seeds)
        trainer.compile(keras.optimizers.Adam(1e-3), run_eagerly=False)
        trainer(_images(train.images[:1]))  # builds the subclassed model, so ModelCheckpoint can save it
    y_train = pad_ground_truth(train.boxes, train.classes)
    y_val = pad_ground_truth(val.boxes, val.classes)
    history = trainer.fit(_images(train.images), y_train, validation_data=(_images(val.images), y_val),
                          epochs=s.epochs, batch_size=s.batch_size, verbose=verbose,
                          callbacks=_callbacks("detector", out, logs, s.patience))
    detector.save(out)
    figures = evaluate_detector(detector, test)
    figures["n_test"] = s.n_test
    figures["final_loss"] = float(history.history["loss"][-1])
    figures["replicas"] = replicas
    return figures


TRAINERS = {"classifier": train_classifier, "backbone": train_backbone, "unet": train_unet,
            "detector": train_detector}


def train(names, out: Path, tiny: bool = False, seed: int = 0, logs: Path | None = None,
          verbose: int = 1, epochs: int | None = None, strategy: str = "default",
          per_image_seeds: bool | None = None) -> dict:
    """Train ``names`` (in the order of :data:`MODELS`) and return their figures by name,
    also written to ``out/metrics.json`` (merged with what is already there).

    ``strategy`` (:data:`STRATEGIES`, see :func:`make_strategy`) distributes the detector's
    training; the other models train as before. On a multi-worker cluster every worker runs
    this same call, and all but the chief write into a temporary folder, removed at the end
    (the way TensorFlow's multi-worker guide saves).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}")
    distribute = make_strategy(strategy) if "detector" in names and strategy != "default" else None
    if distribute is not None and not is_chief():
        import tempfile

        with tempfile.TemporaryDirectory(prefix="workshop-train-worker-") as scratch:
            backbone = Path(out) / "backbone.weights.h5"
            if backbone.exists():
                shutil.copy(backbone, scratch)
            return _train(names, Path(scratch), tiny, seed, None, verbose, epochs, distribute, per_image_seeds)
    return _train(names, Path(out), tiny, seed, logs, verbose, epochs, distribute, per_image_seeds)


def _train(names, out: Path, tiny: bool, seed: int, logs: Path | None, verbose: int,
           epochs: int | None, distribute, per_image_seeds: bool | None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    figures = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    for name in [m for m in MODELS if m in names]:
        s = TINY if tiny else FULL[name]
        if epochs is not None:
            s = Settings(s.n_train, s.n_val, s.n_test, epochs, s.batch_size, s.patience)
        _seed_everything(seed)
        start = time.perf_counter()
        kwargs = {}
        if name == "detector":
            kwargs.update(backbone_weights=out / "backbone.weights.h5", strategy=distribute,
                          per_image_seeds=per_image_seeds)
        result = TRAINERS[name](out, s, seed, logs, verbose, **kwargs)
        result["train_seconds"] = round(time.perf_counter() - start, 1)
        figures[name] = result
        metrics_path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
        print(f"[{name}] {json.dumps(result)}", flush=True)
    for stale in out.glob("*.best.weights.h5"):
        stale.unlink()
    return figures


def build_checkpoint(train_dir: str | os.PathLike | None = None, say=print) -> dict:
    """Retrain everything with ``python -m workshop.train all --out DIR``, pack the checkpoint
    archive and rewrite the manifest beside it, then install it. Returns the new manifest.

    Contract with the trainer (run from the repository root): it writes at least one
    ``<model>*.weights.h5`` or ``<model>*.keras`` for each of :data:`MODELS` and a
    ``metrics.json`` of figures into DIR. Every ``*.weights.h5`` / ``*.keras`` there is packed,
    except ``*.best.weights.h5`` (ModelCheckpoint's leftovers).

    Environment: ``WORKSHOP_TRAIN_MODULE`` (the trainer; default ``workshop.train``),
    ``WORKSHOP_TRAIN_DIR`` (DIR; default ``build/checkpoint-train``), ``WORKSHOP_TRAIN_ARGS``
    (extra trainer arguments, e.g. ``--tiny`` for a smoke test), ``WORKSHOP_CHECKPOINT_MANIFEST``
    (where the manifest and archive are written).
    """
    from .checkpoint import (
        ARCHIVE_NAME,
        METRICS,
        ROOT,
        CheckpointError,
        manifest_path,
        pack,
        prepare,
    )

    module = os.environ.get("WORKSHOP_TRAIN_MODULE", "workshop.train")
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CheckpointError(f"--build runs `python -m {module} all`, but there is no module "
                              f"{module}; the shipped archive and manifest are unchanged")
    train_dir = train_dir or os.environ.get("WORKSHOP_TRAIN_DIR")
    out = Path(train_dir) if train_dir else ROOT / "build" / "checkpoint-train"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", module, "all", "--out", str(out),
           *shlex.split(os.environ.get("WORKSHOP_TRAIN_ARGS", ""))]
    say("Training: " + " ".join(cmd))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p))
    rc = subprocess.run(cmd, env=env, cwd=ROOT, check=False).returncode
    if rc != 0:
        raise CheckpointError(f"training failed (`{' '.join(cmd)}` exited {rc}); the shipped "
                              "archive and manifest are unchanged")
    files = sorted(p for p in out.iterdir() if p.is_file()
                   and p.name.endswith((".weights.h5", ".keras"))
                   and not p.name.endswith(".best.weights.h5"))
    missing = [m for m in MODELS if not any(f.name.startswith(m) for f in files)]
    if missing:
        raise CheckpointError(f"training finished but wrote no weights for {', '.join(missing)}"
                              f" in {out} (expected <model>*.weights.h5 or <model>*.keras)")
    if not (out / METRICS).is_file():
        raise CheckpointError(f"training finished but wrote no {out / METRICS}")
    mpath = manifest_path()
    man = pack(files + [out / METRICS], mpath.parent / ARCHIVE_NAME, mpath, None)
    say(f"Packed {mpath.parent / ARCHIVE_NAME} ({man['archive']['size'] / 2**20:.2f} MB, sha256 "
        f"{man['archive']['sha256']}) and rewrote {mpath}. Commit both.")
    say(prepare(url="", force=True, say=say).message)
    return man


def build_parser(prog: str = "python -m workshop.train") -> argparse.ArgumentParser:
    """The options of the synthetic-scene trainer (``workshop.toolkit.training`` adds those of
    ``train detector --dataset``)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", choices=MODELS + ("all",),
                        help="what to train (all: every model, in the order " + ", ".join(MODELS) + ")")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the weights and figures go (default build/checkpoint)")
    parser.add_argument("--logs", type=Path, default=None, help="TensorBoard log directory (default logs)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    parser.add_argument("--tiny", action="store_true", help="a few images and one epoch (tests)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy for the detector: default (one device), mirrored "
                             "(MirroredStrategy: local GPUs / logical CPUs), multiworker "
                             "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG; run on every worker). "
                             "the batch size stays the global batch, split over the replicas")
    return parser


def run(args: argparse.Namespace) -> int:
    """Train the synthetic-scene models ``build_parser()`` parsed; 2 for a bad option."""
    names = MODELS if "all" in args.models else tuple(args.models)
    if args.epochs is not None and args.epochs < 1:
        print(f"train: --epochs: expected at least 1, got {args.epochs}", file=sys.stderr)
        return 2
    try:
        train(names, args.out or Path("build/checkpoint"), tiny=args.tiny, seed=args.seed,
              logs=args.logs or Path("logs"), verbose=0 if args.quiet else 2 if args.tiny else 1,
              epochs=args.epochs, strategy=args.strategy)
    except ValueError as err:
        if "--strategy" not in str(err) and "replicas" not in str(err):
            raise
        print(f"train: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
