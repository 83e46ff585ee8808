"""``python -m workshop predict PATH...``: the detector on images, folders and videos.

Writes a COCO results file (``--output``, default ``predictions.json``)::

    [{"image_id": 1, "category_id": 2, "bbox": [x, y, width, height], "score": 0.97}, ...]

(``bbox`` xywh in continuous pixels of the image as read, the format of pycocotools'
``loadRes`` and :func:`workshop.evaluation.load_coco_detections`), and beside it a sidecar
``<output stem>.images.json`` in COCO's ``images`` / ``categories`` form saying what each id is::

    {"images": [{"id": 1, "file_name": "photos/cat.jpg", "width": 320, "height": 213},
                {"id": 2, "file_name": "clip.mp4", "frame": 0, "time_s": 0.0, ...}, ...],
     "categories": [{"id": 1, "name": "circle"}, ...],
     "videos": [{"file_name": "clip.mp4", "frames": 30, "frames_per_second": 14.2, ...}],
     "info": {"checkpoint": ..., "stages": {"batched_nms": "yours (...)", ...}, "failures": [...]}}

A video gets one image id per frame, read and processed one frame at a time. With
``--annotations ANN.json`` the image ids (matched by ``file_name``) and the category ids
(matched by name) are that file's, so ``workshop eval`` can compare the two.

A file that cannot be read (or on which a learner's stage fails) is reported and skipped; the
others' results are still written (exit status 1). Both files are written atomically, also when
the run is interrupted (Ctrl-C: what was done so far, marked ``"interrupted": true``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .detection import Predictor, ToolkitError, class_names_of, load_predictor, parse_classes
from .media import (
    MediaError,
    VideoReader,
    VideoWriter,
    atomic_write_text,
    collect_inputs,
    draw_detections,
    read_image,
    write_image,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workshop predict",
        description="Run the course's detector on images, folders of images and videos; write COCO "
                    "results JSON (bbox = [x, y, width, height] in pixels) and a sidecar "
                    "<output>.images.json naming the file (and frame) of each image id.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, video files or folders (searched recursively)")
    p.add_argument("--model", metavar="OUT.tflite",
                   help="run this TensorFlow Lite model (python -m workshop export) instead of the Keras weights")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="folder with detector_rpn.weights.h5 and detector_head.weights.h5 (default: the course's "
                        "checkpoint); a folder `workshop train detector --dataset` wrote also gives its classes")
    p.add_argument("--stages", metavar="NOTEBOOK", action="append", default=[],
                   help="use your own stages (anchors, proposals, RoI align, decode, NMS) from this notebook's "
                        "solution cells where they are implemented; repeat for several notebooks. Runs the "
                        "notebook's code in this process: only for notebooks you trust")
    p.add_argument("--min-score", type=float, default=0.05, metavar="S", help="keep detections scoring above S (default 0.05)")
    p.add_argument("--max-detections", type=int, default=100, metavar="N", help="at most N detections per image (default 100)")
    p.add_argument("--classes", metavar="a,b", help="only these classes (e.g. circle,ring)")
    p.add_argument("--output", default="predictions.json", metavar="FILE", help="results file (default predictions.json)")
    p.add_argument("--save-media", metavar="DIR", help="also write each image / video with its boxes drawn into DIR")
    p.add_argument("--annotations", metavar="ANN.json",
                   help="take image ids (by file_name) and category ids (by name) from this COCO file")
    p.add_argument("--max-megapixels", type=float, default=40.0, metavar="MP",
                   help="refuse larger images (default 40)")
    return p


# -- ids ---------------------------------------------------------------------------------------
@dataclass
class Ids:
    """Image ids (sequential, or by file name from an annotations file) and category ids (the
    detector's, or by name from the annotations file)."""

    by_file: dict[str, int] = field(default_factory=dict)
    category: dict[int, int] = field(default_factory=dict)     # detector class id -> output id
    next_id: int = 1

    def image_id(self, file_name: str) -> int:
        if self.by_file:
            found = self.by_file.get(file_name, self.by_file.get(Path(file_name).name))
            if found is None:
                raise MediaError("not listed in the annotations file's images (matched by file_name)")
            return found
        return self.fresh()

    def fresh(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def ids_from_annotations(path: str | None, class_names, classes: list[int] | None) -> Ids:
    """:class:`Ids` for ``--annotations`` (``None``: 1, 2, ... and the detector's class ids).
    Raises :class:`ToolkitError` for an unreadable file or a kept class the file does not name."""
    if path is None:
        return Ids(category={i: i for i in range(1, len(class_names))})
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        images, categories = data["images"], data["categories"]
        by_file = {}
        for img in images:
            by_file[str(img["file_name"])] = int(img["id"])
            by_file.setdefault(Path(str(img["file_name"])).name, int(img["id"]))
        by_name = {str(c["name"]): int(c["id"]) for c in categories}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ToolkitError(f"--annotations {path}: not a COCO file with images (id, file_name) and "
                           f"categories (id, name): {type(err).__name__}: {err}") from None
    wanted = classes if classes is not None else range(1, len(class_names))
    missing = [class_names[k] for k in wanted if class_names[k] not in by_name]
    if missing:
        raise ToolkitError(f"--annotations {path} has no categor{'y' if len(missing) == 1 else 'ies'} "
                           f"{', '.join(missing)}; keep the classes it names with --classes")
    top = max([0, *by_file.values()])
    return Ids(by_file, {k: by_name[class_names[k]] for k in wanted}, top + 1)


# -- results -----------------------------------------------------------------------------------
def coco_entries(image_id: int, result: dict, category: dict[int, int]) -> list[dict]:
    """One image's detections (``boxes`` float ``(D, 4)`` xyxy) as COCO results (bbox xywh)."""
    xyxy = np.asarray(result["boxes"], np.float64).reshape(-1, 4)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    return [{"image_id": int(image_id), "category_id": category[int(c)],
             "bbox": [round(float(v), 3) for v in b], "score": round(float(s), 6)}
            for b, s, c in zip(xywh, result["scores"], result["classes"])]


@dataclass
class Run:
    """What a run has produced so far (written out whole at the end, or on interruption)."""

    results: list = field(default_factory=list)
    images: list = field(default_factory=list)
    videos: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    media: set = field(default_factory=set)

    def media_path(self, folder: Path, source: Path, suffix: str | None = None) -> Path:
        """A file in ``folder`` named after ``source`` (``-2``, ``-3``, ... when taken)."""
        suffix = suffix or source.suffix or ".jpg"
        candidate, n = folder / f"{source.stem}{suffix}", 1
        while candidate in self.media:
            n += 1
            candidate = folder / f"{source.stem}-{n}{suffix}"
        self.media.add(candidate)
        return candidate


def predict_image(predictor: Predictor, path: Path, ids: Ids, run: Run, save_dir: Path | None,
                  max_pixels: int) -> None:
    """Detect on one image file; add its results and image entry to ``run``."""
    image_id = ids.image_id(str(path))
    rgb = read_image(path, max_pixels)
    result = predictor.predict(rgb)
    entry = {"id": image_id, "file_name": str(path), "height": int(rgb.shape[0]), "width": int(rgb.shape[1])}
    if save_dir is not None:
        out = run.media_path(save_dir, path, path.suffix.lower() if path.suffix.lower() in
                             (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff") else ".png")
        write_image(out, draw_detections(rgb, result["boxes"], result["scores"], result["classes"],
                                         predictor.class_names))
        entry["media"] = str(out)
    run.images.append(entry)
    run.results += coco_entries(image_id, result, ids.category)


def predict_video(predictor: Predictor, path: Path, ids: Ids, run: Run, save_dir: Path | None) -> str:
    """Detect on every frame of a video, streamed (one image id per frame); returns the line to
    print (frames, seconds, frames per second)."""
    from tqdm import tqdm

    with VideoReader(path) as reader:
        writer = None
        if save_dir is not None:
            writer = VideoWriter(run.media_path(save_dir, path, ".mp4"), reader.fps, reader.size)
        record = {"file_name": str(path), "frames": 0, "source_fps": reader.fps, "first_image_id": None}
        run.videos.append(record)
        start = time.perf_counter()
        try:
            for k, rgb in enumerate(tqdm(reader.frames(), total=reader.frame_count or None,
                                         desc=path.name, unit="frame", leave=False)):
                image_id = ids.fresh()
                result = predictor.predict(rgb)
                run.images.append({"id": image_id, "file_name": str(path), "frame": k,
                                   "time_s": round(k / reader.fps, 4), "height": int(rgb.shape[0]),
                                   "width": int(rgb.shape[1])})
                run.results += coco_entries(image_id, result, ids.category)
                record["frames"] = k + 1
                record["first_image_id"] = record["first_image_id"] or image_id
                if writer is not None:
                    writer.write(draw_detections(rgb, result["boxes"], result["scores"], result["classes"],
                                                 predictor.class_names))
        finally:
            seconds = time.perf_counter() - start
            if writer is not None:
                writer.close(keep=record["frames"] > 0)
                if record["frames"]:
                    record["media"] = str(writer.path)
        if record["frames"] == 0:
            raise MediaError("OpenCV read no frames from it")
    fps = record["frames"] / seconds if seconds > 0 else float("inf")
    record["seconds"], record["frames_per_second"] = round(seconds, 3), round(fps, 2)
    return f"{path}: {record['frames']} frames in {seconds:.2f} s, {fps:.1f} frames/s"


def write_outputs(output: Path, run: Run, predictor: Predictor, ids: Ids, args, interrupted: bool) -> Path:
    """Write the results file and its sidecar (both atomically); returns the sidecar's path."""
    sidecar = output.with_name(output.stem + ".images.json")
    id_names = {v: predictor.class_names[k] for k, v in ids.category.items()}
    info = {"tool": "python -m workshop predict",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": str(predictor.checkpoint), "stages": predictor.stages.summary(),
            "min_score": predictor.min_score, "max_detections": predictor.max_detections,
            "classes": None if predictor.classes is None else [predictor.class_names[k] for k in predictor.classes],
            "annotations": args.annotations, "results": str(output),
            "interrupted": interrupted, "failures": run.failures}
    meta = {"info": info, "images": run.images, "videos": run.videos,
            "categories": [{"id": i, "name": n} for i, n in sorted(id_names.items())]}
    atomic_write_text(output, json.dumps(run.results))
    atomic_write_text(sidecar, json.dumps(meta, indent=1))
    return sidecar


def _fail(message: str) -> int:
    print(f"predict: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    if output.is_dir():
        return _fail(f"--output {output} is a folder; give a file name (e.g. {output / 'predictions.json'})")
    try:
        inputs, skipped = collect_inputs(args.paths)
        if not inputs:
            return _fail(f"no images or videos in {', '.join(args.paths)}"
                         + (f" ({len(skipped)} other files skipped)" if skipped else ""))
        class_names = class_names_of(None if args.model else args.checkpoint)
        classes = parse_classes(args.classes, class_names)
        ids = ids_from_annotations(args.annotations, class_names, classes)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_dir = Path(args.save_media) if args.save_media else None
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
        predictor = load_predictor(args.checkpoint, args.stages, args.min_score, args.max_detections, classes,
                                   model=args.model)
    except (ToolkitError, MediaError, OSError) as err:
        return _fail(str(err))
    print("\n".join(predictor.describe()))
    if skipped:
        print(f"skipped {len(skipped)} file{'s' if len(skipped) > 1 else ''} that "
              f"{'are' if len(skipped) > 1 else 'is'} neither images nor videos")
    run, interrupted = Run(), False
    try:
        interrupted = _run_all(predictor, inputs, ids, run, save_dir, int(args.max_megapixels * 1e6))
    finally:
        sidecar = write_outputs(output, run, predictor, ids, args, interrupted)
    n_frames = sum(v["frames"] for v in run.videos)
    print(f"{len(run.images) - n_frames} images, {n_frames} video frames, {len(run.results)} detections "
          f"-> {output} (ids: {sidecar})" + (f"; media in {save_dir}" if save_dir else ""))
    for f in run.failures:
        print(f"predict: {f['file']}: {f['error']}", file=sys.stderr)
    if interrupted:
        print("predict: interrupted; the results so far are written", file=sys.stderr)
        return 130
    return 1 if run.failures else 0


def _run_all(predictor, inputs, ids, run, save_dir, max_pixels) -> bool:
    """Every input in turn (a failing file is recorded in ``run.failures``); True when
    interrupted with Ctrl-C."""
    from tqdm import tqdm

    n_images = sum(kind == "image" for _, kind in inputs)
    bar = tqdm(total=n_images, desc="images", unit="image", disable=n_images < 2)
    try:
        for path, kind in inputs:
            try:
                if kind == "image":
                    predict_image(predictor, path, ids, run, save_dir, max_pixels)
                    bar.update()
                else:
                    tqdm.write(predict_video(predictor, path, ids, run, save_dir), file=sys.stdout)
            except MediaError as err:
                run.failures.append({"file": str(path), "error": str(err)})
            except Exception as err:  # e.g. a learner's stage failing on a real image: keep going
                run.failures.append({"file": str(path), "error": f"the detector failed: {type(err).__name__}: {err}"})
    except KeyboardInterrupt:
        return True
    finally:
        bar.close()
    return False
