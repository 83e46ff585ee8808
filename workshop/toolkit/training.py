"""``python -m workshop train detector --dataset DATA [--images DIR] --out DIR``: the course's
detector trained on a data set of your own, resumably.

``DATA`` is a COCO instances file (``--images``: the folder its ``file_name`` entries are
relative to, default the file's folder) or a Pascal VOC root / folder of ``.xml`` files, taken
as ``workshop eval`` takes them (:mod:`workshop.toolkit.datasets`). Images of any size are
letterboxed to ``--image-size`` (square, default 128: the course detector's input), their boxes
scaled with them. The detector has the data set's classes; its backbone and RPN start from the
course checkpoint's (``--init``), its box head fresh. ``--val-fraction`` of the images (a seeded
random split, kept for the whole run) are held out: their loss and COCO mAP / AP50 (the course's
evaluation, :mod:`workshop.evaluation`) are logged after every epoch and printed at the end.

``--out`` receives, after every finished epoch and each file written under a temporary name
then renamed (a run interrupted mid-epoch leaves the previous epoch's files whole):

    detector_rpn.weights.h5, detector_head.weights.h5   the weights (``TwoStageDetector.save``)
    detector.json          class names and input size: ``workshop predict --checkpoint OUT``
    optimizer.npz          Adam's state (its step count and moments)
    training_state.json    epochs done, the split, the options, the history of every epoch
    logs/                  TensorBoard (``--logs``): loss and val loss, val mAP / AP50 per epoch

The same command run again continues after the last finished epoch (``--resume`` insists on
it, ``--restart`` starts over); ``--epochs`` is the total. Any other command of the toolkit
takes ``OUT`` as a checkpoint: ``predict --checkpoint OUT``, ``serve --checkpoint OUT``.

Without ``--dataset``, ``python -m workshop train`` trains the course's models on synthetic
scenes (:mod:`workshop.train`, whose options this command shares).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .datasets import Arrays, DatasetError, DetectionData, load_dataset, prepare, targets
from .detection import DETECTOR_INFO, WEIGHT_FILES, ToolkitError
from .media import atomic_write_text

STATE = "training_state.json"
OPTIMIZER = "optimizer.npz"
INITS = ("rpn", "backbone", "none")
DEFAULT_EPOCHS = 10
DEFAULT_OUT = Path("build/detector")


# -- options -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """:func:`workshop.train.build_parser`'s options plus those of ``--dataset``."""
    from workshop.train import build_parser as synthetic_options

    p = synthetic_options(prog="python -m workshop train")
    p.description = ("Train the course's models on synthetic scenes, or (train detector --dataset) the "
                     "detector on a COCO or Pascal VOC data set of your own, resumably.")
    g = p.add_argument_group(
        "your own data set (python -m workshop train detector --dataset DATA --out DIR)",
        "--out (default build/detector) gets the weights, detector.json (classes, input size), the "
        "optimizer's state and training_state.json after every epoch; the same command again continues "
        "after the last finished epoch. --epochs is the total (default 10), --logs defaults to OUT/logs.")
    g.add_argument("--dataset", metavar="DATA",
                   help="a COCO instances file (.json: images, annotations, categories; bbox = [x, y, w, h]) "
                        "or a Pascal VOC root holding Annotations/ (or a folder of VOC .xml files)")
    g.add_argument("--images", metavar="DIR",
                   help="the folder the annotations' file names are relative to (default: the COCO file's "
                        "folder; for VOC, JPEGImages/ beside Annotations/, else the .xml files' folder)")
    g.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="hold out this fraction of the images for validation (default 0.2; 0: none)")
    g.add_argument("--image-size", type=int, default=128, metavar="S",
                   help="letterbox every image to S x S pixels, S a multiple of 8 (default 128, the course's)")
    g.add_argument("--batch-size", type=int, default=8, metavar="B", help="images per step (default 8)")
    g.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR", help="Adam's (default 1e-3)")
    g.add_argument("--init", choices=INITS, default="rpn",
                   help="start from the course checkpoint's backbone and RPN (rpn, default), its backbone "
                        "only (backbone), or random weights (none); the box head always starts fresh")
    resume = g.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue the run in --out (an error when there is none); the default when "
                             "--out holds one")
    resume.add_argument("--restart", action="store_true", help="start over, ignoring what --out holds")
    return p


@dataclasses.dataclass
class Options:
    """What ``train detector --dataset`` was asked to do (paths as given)."""

    dataset: Path
    images: Path | None = None
    out: Path = DEFAULT_OUT
    logs: Path | None = None
    epochs: int = DEFAULT_EPOCHS
    val_fraction: float = 0.2
    image_size: int = 128
    batch_size: int = 8
    learning_rate: float = 1e-3
    init: str = "rpn"
    seed: int = 0
    resume: str = "auto"           # "auto" | "require" | "restart"
    verbose: int = 1

    def check(self) -> None:
        """Raise :class:`ToolkitError` for an option out of range."""
        if self.epochs < 1:
            raise ToolkitError(f"--epochs: expected at least 1, got {self.epochs}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ToolkitError(f"--val-fraction: expected a fraction in [0, 1), got {self.val_fraction}")
        if self.image_size < 32 or self.image_size % 8:
            raise ToolkitError(f"--image-size: expected a multiple of 8, at least 32, got {self.image_size}")
        if self.batch_size < 1:
            raise ToolkitError(f"--batch-size: expected at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ToolkitError(f"--learning-rate: expected a positive number, got {self.learning_rate}")
        if self.init not in INITS:
            raise ToolkitError(f"--init: expected one of {', '.join(INITS)}, got {self.init!r}")
        if self.out.exists() and not self.out.is_dir():
            raise ToolkitError(f"--out {self.out}: is a file; give a folder")

    @property
    def log_dir(self) -> Path:
        return self.logs if self.logs is not None else self.out / "logs"


def options_from(args: argparse.Namespace) -> Options:
    """:class:`Options` from the parsed command line; :class:`ToolkitError` for options that do
    not go with ``--dataset``."""
    if list(args.models) != ["detector"]:
        raise ToolkitError(f"--dataset trains the detector: `train detector --dataset ...`, not "
                           f"{' '.join(args.models)}")
    if args.tiny:
        raise ToolkitError("--tiny is for the synthetic scenes; with --dataset, choose --epochs")
    if args.strategy != "default":
        raise ToolkitError("--strategy: a data set of your own trains on one device (--strategy default)")
    return Options(Path(args.dataset), Path(args.images) if args.images else None, args.out or DEFAULT_OUT,
                   args.logs, DEFAULT_EPOCHS if args.epochs is None else args.epochs, args.val_fraction,
                   args.image_size, args.batch_size, args.learning_rate, args.init, args.seed,
                   "require" if args.resume else "restart" if args.restart else "auto",
                   0 if args.quiet else 1)


# -- the split and the state ---------------------------------------------------------------------
def split_images(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded random ``(train, val)`` split of image names; ``round(n * val_fraction)`` images
    (at least one when the fraction is positive) are held out."""
    n = len(names)
    n_val = 0 if val_fraction == 0 else max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ToolkitError(f"--val-fraction {val_fraction:g} of {n} image{'s' * (n != 1)} leaves none to "
                           "train on; lower it (0: no validation)")
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(names[i] for i in order[:n_val])
    held = set(val)
    return [m for m in names if m not in held], val


def read_state(out: Path) -> dict | None:
    """The run recorded in ``out`` (:data:`STATE`), or None when there is none."""
    path = out / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        int(state["epochs_done"]), list(state["class_names"]), dict(state["split"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ToolkitError(f"--out {out}: {STATE} is not a training state ({err}); --restart starts over") from None
    return state


def check_resumable(state: dict, opts: Options, data: DetectionData) -> None:
    """Raise :class:`ToolkitError` when ``state`` is another run than the one asked for."""
    why = None
    if list(state["class_names"]) != list(data.class_names):
        why = (f"it trained the classes {', '.join(state['class_names'][1:])}, this data set has "
               f"{', '.join(data.class_names[1:])}")
    elif int(state.get("image_size", 0)) != opts.image_size:
        why = f"it trained at --image-size {state.get('image_size')}, not {opts.image_size}"
    else:
        names = {im.name for im in data.images}
        recorded = set(state["split"]["train"]) | set(state["split"]["val"])
        if names != recorded:
            why = (f"the data set's images changed ({len(names - recorded)} new, {len(recorded - names)} "
                   "gone)")
    if why:
        raise ToolkitError(f"--out {opts.out} holds another training run: {why}; --restart starts over "
                           "there, or give another --out")
    if not all((opts.out / f).is_file() for f in (*WEIGHT_FILES, OPTIMIZER)):
        raise ToolkitError(f"--out {opts.out}: {STATE} says {state['epochs_done']} epochs are done but the "
                           f"weights are missing; --restart starts over")


@contextlib.contextmanager
def signals_deferred():
    """Ctrl-C and SIGTERM held back while a checkpoint's files are renamed into place (so the
    weights and the state always belong to the same epoch), delivered right after."""
    blockable = hasattr(signal, "pthread_sigmask")
    if blockable:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if blockable:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _temp_name(final: Path) -> Path:
    """A temporary name beside ``final`` that keeps its suffixes (Keras wants ``.weights.h5``)."""
    return final.with_name(f".{os.getpid()}.tmp.{final.name}")


def save_checkpoint(out: Path, detector, optimizer, state: dict) -> None:
    """Write weights, optimizer state and ``state`` under temporary names, then rename them all
    into place with signals deferred (:func:`signals_deferred`)."""
    staged = []
    try:
        for model, name in ((detector.rpn, WEIGHT_FILES[0]), (detector.head, WEIGHT_FILES[1])):
            tmp = _temp_name(out / name)
            model.save_weights(tmp)
            staged.append((tmp, out / name))
        store: dict = {}
        optimizer.save_own_variables(store)
        tmp = _temp_name(out / OPTIMIZER)
        with open(tmp, "wb") as f:
            np.savez(f, **store)
        staged.append((tmp, out / OPTIMIZER))
        text = json.dumps(state, indent=1) + "\n"
        with signals_deferred():
            for tmp, final in staged:
                os.replace(tmp, final)
            atomic_write_text(out / STATE, text)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()


# -- evaluation -----------------------------------------------------------------------------------
def evaluate(detector, arrays: Arrays, num_classes: int, voc: bool = False, batch: int = 16) -> dict:
    """COCO mAP@[.5:.95], AP50 and AP50 per class (and, ``voc``, the VOC mAP at IoU 0.5) of
    ``detector`` on ``arrays`` (crowd / difficult objects ignored), with :mod:`workshop.evaluation`.
    AP of a class without objects is None."""
    from workshop import evaluation as ev

    gi, gc, gb, gg, di, dc, db, ds = [], [], [], [], [], [], [], []
    for start in range(0, len(arrays.images), batch):
        for j, det in enumerate(detector.detect(arrays.images[start:start + batch])):
            i = start + j
            gi += [i] * len(arrays.boxes[i])
            gc += list(arrays.classes[i])
            gb.append(arrays.boxes[i])
            gg += list(arrays.ignore[i])
            di += [i] * len(det["boxes"])
            dc += list(det["classes"])
            db.append(np.asarray(det["boxes"]).reshape(-1, 4))
            ds += list(det["scores"])
    classes = list(range(1, num_classes + 1))
    gt = ev.ground_truths(gi, gc, np.concatenate(gb or [np.zeros((0, 4))]), crowd=gg, difficult=gg,
                          images=list(range(len(arrays.images))), classes=classes)
    dt = ev.detections(di, dc, np.concatenate(db or [np.zeros((0, 4))]), ds)
    coco = ev.coco_evaluate(gt, dt)
    figures = {"map": float(coco.stats[0]), "ap50": float(coco.stats[1]),
               "ap50_per_class": [None if not np.isfinite(a) else float(a) for a in coco.ap50_per_class]}
    if voc:
        figures["voc_map"] = float(ev.voc_evaluate(gt, dt, iou_threshold=0.5).mean_ap)
    return figures


# -- training ------------------------------------------------------------------------------------
def build(opts: Options, num_classes: int, seed: int):
    """The detector (``num_classes``, ``opts.image_size``) and its training model, compiled."""
    import keras

    from workshop.course import reference_stages, reference_training_stages
    from workshop.models.detector import DetectorConfig, TwoStageDetector
    from workshop.models.detector_training import build_training_model

    config = DetectorConfig(num_classes=num_classes, image_size=(opts.image_size, opts.image_size))
    detector = TwoStageDetector(config, stages=reference_stages())
    trainer = build_training_model(detector, reference_training_stages(), seed)
    trainer.compile(keras.optimizers.Adam(opts.learning_rate), run_eagerly=False)
    trainer(np.zeros((1, opts.image_size, opts.image_size, 3), np.float32))   # builds the networks
    return detector, trainer


def initial_weights(detector, init: str) -> str:
    """Load the course checkpoint's backbone (+ RPN) into ``detector``; says what was loaded."""
    if init == "none":
        return "random weights"
    from workshop.checkpoint import CheckpointError, ready_dir

    try:
        ckpt = ready_dir()
    except CheckpointError as err:
        raise ToolkitError(f"--init {init}: {err} (or --init none)") from None
    if init == "rpn":
        detector.rpn.load_weights(ckpt / WEIGHT_FILES[0])
        return f"backbone and RPN from {ckpt}, a fresh box head"
    detector.rpn.get_layer("backbone").load_weights(ckpt / "backbone.weights.h5")
    return f"backbone from {ckpt}, a fresh RPN head and box head"


def _dataset(arrays: Arrays, y, batch_size: int, shuffle_seed: int | None):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((arrays.images, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(arrays.images), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, t: (tf.cast(x, tf.float32) / 255.0, t))
    return ds.prefetch(tf.data.AUTOTUNE)


def _callbacks(opts: Options, detector, trainer, val: Arrays | None, num_classes: int, state: dict, say):
    import keras

    class EpochEnd(keras.callbacks.Callback):
        """The validation mAP into the epoch's logs (so TensorBoard and the progress bar show
        it); then, after TensorBoard, the checkpoint (:class:`Save`)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if val is not None and logs is not None:
                figures = evaluate(detector, val, num_classes)
                logs["val_map"], logs["val_ap50"] = figures["map"], figures["ap50"]

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - first.started, 1),
                      **{k: float(v) for k, v in (logs or {}).items()}}
            state["history"].append(record)
            state["epochs_done"] = epoch + 1
            state["optimizer_steps"] = int(trainer.optimizer.iterations.numpy())
            save_checkpoint(opts.out, detector, trainer.optimizer, state)
            shown = ", ".join(f"{k} {record[k]:.4f}" for k in ("loss", "val_loss", "val_map", "val_ap50") if k in record)
            say(f"epoch {epoch + 1}/{opts.epochs} saved in {opts.out} ({shown})")

    first = EpochEnd()
    board = keras.callbacks.TensorBoard(str(opts.log_dir), histogram_freq=0, write_graph=False)
    return [first, board, Save()]


def train_on_dataset(opts: Options, say=print) -> dict:
    """Train (or go on training) as ``opts`` says; returns the final state (``history``, the
    validation ``figures``). Raises :class:`ToolkitError` for bad input, before training."""
    opts.check()
    data = load_dataset(opts.dataset, opts.images)
    state = None if opts.resume == "restart" else read_state(opts.out)
    if opts.resume == "require" and state is None:
        raise ToolkitError(f"--resume: no training run in {opts.out} (no {STATE}); leave --resume out to start one")
    if state is not None:
        check_resumable(state, opts, data)
        train_names, val_names = list(state["split"]["train"]), list(state["split"]["val"])
    else:
        train_names, val_names = split_images([im.name for im in data.images], opts.val_fraction, opts.seed)
    say(f"{data.format.upper()} data set {opts.dataset}: {len(data.images)} images ({len(train_names)} to train "
        f"on, {len(val_names)} held out), {data.num_objects} objects, {data.num_classes} classes: "
        f"{', '.join(data.class_names[1:])}")
    done = int(state["epochs_done"]) if state is not None else 0
    if state is not None:
        say(f"resuming: {done} of {opts.epochs} epochs done in {opts.out}"
            + (", nothing left to train (raise --epochs to train more)" if done >= opts.epochs else
               f"; training epochs {done + 1} to {opts.epochs}"))

    from workshop.course import import_tensorflow
    from workshop.train import _seed_everything

    import_tensorflow()
    train = prepare(data, train_names, opts.image_size, opts.verbose, "training")
    val = prepare(data, val_names, opts.image_size, opts.verbose, "validation") if val_names else None
    if not any((~g).any() for g in train.ignore):
        raise DatasetError(f"--dataset {opts.dataset}: the training split has no objects (all are held out "
                           "or crowd / difficult); lower --val-fraction or change --seed")
    opts.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(opts.out / DETECTOR_INFO, json.dumps(
        {"class_names": list(data.class_names), "input_size": opts.image_size, "resize": "letterbox",
         "dataset": str(opts.dataset)}, indent=1) + "\n")
    _seed_everything(opts.seed + done)
    detector, trainer = build(opts, data.num_classes, opts.seed + 1000 * done)
    if state is None:
        say(f"starting from {initial_weights(detector, opts.init)}")
        state = {"format": 1, "dataset": str(opts.dataset), "dataset_format": data.format,
                 "class_names": list(data.class_names), "image_size": opts.image_size,
                 "val_fraction": opts.val_fraction, "seed": opts.seed, "batch_size": opts.batch_size,
                 "learning_rate": opts.learning_rate, "init": opts.init,
                 "split": {"train": train_names, "val": val_names}, "epochs_done": 0, "optimizer_steps": 0,
                 "history": []}
    else:
        detector.load(opts.out)
        trainer.optimizer.build(trainer.trainable_variables)
        with np.load(opts.out / OPTIMIZER) as saved:
            trainer.optimizer.load_own_variables({k: saved[k] for k in saved.files})
        step = int(trainer.optimizer.iterations.numpy())
        line = f"loaded the weights and optimizer state of epoch {done} (step {step})"
        saved_map = state["history"][-1].get("val_map") if state["history"] else None
        if val is not None and saved_map is not None:
            now = evaluate(detector, val, data.num_classes)["map"]
            line += f"; val mAP {now:.4f} " + ("(as saved)" if abs(now - saved_map) <= 1e-6 else
                                              f"(saved: {saved_map:.4f}: the files changed since)")
        say(line)
    max_gt = max(1, max(int((~g).sum()) for g in train.ignore + (val.ignore if val else [])))
    if done < opts.epochs:
        train_ds = _dataset(train, targets(train, max_gt), opts.batch_size, opts.seed + done)
        val_ds = _dataset(val, targets(val, max_gt), opts.batch_size, None) if val is not None else None
        trainer.fit(train_ds, validation_data=val_ds, initial_epoch=done, epochs=opts.epochs, shuffle=False,
                    verbose=opts.verbose if opts.verbose < 1 or sys.stdout.isatty() else 2,
                    callbacks=_callbacks(opts, detector, trainer, val, data.num_classes, state, say))
    if val is not None:
        figures = evaluate(detector, val, data.num_classes, voc=data.format == "voc")
        state["figures"] = figures
        atomic_write_text(opts.out / STATE, json.dumps(state, indent=1) + "\n")
        say(format_figures(figures, data.class_names, len(val.images)))
    else:
        say("no validation split (--val-fraction 0): no mAP to report")
    say(f"weights: {opts.out} (python -m workshop predict IMAGES --checkpoint {opts.out}); "
        f"TensorBoard: tensorboard --logdir {opts.log_dir}")
    return state


def format_figures(figures: dict, class_names, n_images: int) -> str:
    """The validation figures as a few lines: mAP, AP50 (and VOC mAP), AP50 per class."""
    lines = [f"validation ({n_images} images): COCO mAP@[.5:.95] {figures['map']:.4f}, AP50 {figures['ap50']:.4f}"
             + (f", VOC mAP@0.5 {figures['voc_map']:.4f}" if "voc_map" in figures else "")]
    width = max(len(n) for n in class_names[1:])
    for name, ap in zip(class_names[1:], figures["ap50_per_class"]):
        lines.append(f"  {name:<{width}}  AP50 {'-' if ap is None else format(ap, '.4f')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m workshop train``: with ``--dataset`` the detector on your data, else
    :func:`workshop.train.run`."""
    args = build_parser().parse_args(argv)
    if args.dataset is None:
        extra = [flag for flag, used in (("--images", args.images), ("--resume", args.resume),
                                         ("--restart", args.restart)) if used]
        if extra:
            print(f"train: {', '.join(extra)} go with --dataset", file=sys.stderr)
            return 2
        from workshop.train import run

        return run(args)
    try:
        train_on_dataset(options_from(args))
    except ToolkitError as err:
        print(f"train: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        state = read_state(args.out or DEFAULT_OUT) if (args.out or DEFAULT_OUT).is_dir() else None
        done = 0 if state is None else state["epochs_done"]
        print(f"train: interrupted; {done} finished epoch{'s' * (done != 1)} saved in {args.out or DEFAULT_OUT}; "
              "the same command continues from there", file=sys.stderr)
        return 130
    return 0
