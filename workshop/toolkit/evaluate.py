"""``python -m workshop eval``: the course's detection evaluation of a results file.

COCO (bit-exact with pycocotools' ``COCOeval``, see :mod:`workshop.evaluation`)::

    python -m workshop eval --annotations instances.json --predictions predictions.json

prints pycocotools' 12 summary lines and AP, AP50 and AP75 per class (named by the annotations'
categories). Pascal VOC, against a folder of VOC XML files (or a VOC root with ``Annotations/``)::

    python -m workshop eval --voc VOCdevkit/VOC2007 --predictions predictions.json

matches each result's image to an XML file by file name and its category by name through the
sidecar ``predictions.images.json`` that ``workshop predict`` writes, and prints AP at IoU 0.5
per class and their mean (``--voc-method voc`` = VOC2010+ all points, ``voc07`` = 11 points).

Boxes: COCO files hold ``bbox`` = xywh, VOC files 1-based inclusive corners; both become float
xyxy in continuous pixels (no "+1") on reading.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .detection import ToolkitError
from .media import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workshop eval",
        description="Evaluate detections (a COCO results file) against COCO ground truth (the 12 COCO "
                    "numbers, bit-exact with pycocotools, and AP per class) or a Pascal VOC folder.")
    truth = p.add_mutually_exclusive_group(required=True)
    truth.add_argument("--annotations", metavar="ANN.json", help="COCO instances file (images, annotations, categories)")
    truth.add_argument("--voc", metavar="DIR", help="folder of VOC .xml files, or a VOC root holding Annotations/")
    p.add_argument("--predictions", required=True, metavar="PRED.json",
                   help="COCO results: [{image_id, category_id, bbox: [x, y, w, h], score}, ...]")
    p.add_argument("--images", metavar="PRED.images.json",
                   help="--voc: the sidecar naming each image id's file and category id's name "
                        "(default: beside PRED.json, as workshop predict writes it)")
    p.add_argument("--voc-method", choices=("voc", "voc07"), default="voc",
                   help="--voc: AP as VOC2010+ (all points, default) or VOC2007 (11 points)")
    p.add_argument("--iou", type=float, default=0.5, help="--voc: IoU threshold (default 0.5)")
    p.add_argument("--json", metavar="FILE", dest="json_out", help="also write the numbers as JSON")
    return p


def _read_json(path: str, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ToolkitError(f"{what} {path}: {err.strerror or err}") from None
    except ValueError as err:
        raise ToolkitError(f"{what} {path}: not valid JSON ({err})") from None


# -- COCO ------------------------------------------------------------------------------------
def coco_report(annotations: str, predictions: str) -> dict:
    """Evaluate; returns ``{"stats": {name: value} (12), "per_class": [{"id", "name", "ap",
    "ap50", "ap75"}, ...], "images": n, "detections": n}`` (NaN AP -> None: no ground truth)."""
    from workshop import evaluation as ev

    gt_json = _read_json(annotations, "--annotations")
    dt_json = _read_json(predictions, "--predictions")
    try:
        gt = ev.load_coco_ground_truth(gt_json)
        dt = ev.load_coco_detections(dt_json)
        result = ev.coco_evaluate(gt, dt)
    except ValueError as err:
        raise ToolkitError(f"cannot evaluate {predictions} against {annotations}: {err}") from None
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in gt_json.get("categories", [])}
    per_class = [{"id": int(k), "name": names.get(int(k), str(int(k))), "ap": _num(a), "ap50": _num(a50),
                  "ap75": _num(a75)}
                 for k, a, a50, a75 in zip(result.class_ids, result.ap_per_class, result.ap50_per_class,
                                           result.ap75_per_class)]
    return {"stats": dict(zip(ev.STAT_NAMES, map(float, result.stats))), "per_class": per_class,
            "images": int(len(result.image_ids)), "detections": len(dt), "summary": result.summary()}


def _num(x) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _cell(x: float | None) -> str:
    return "      -" if x is None else f"{x:7.3f}"


def print_coco(report: dict) -> None:
    print(f"{report['detections']} detections on {report['images']} images")
    print(report["summary"])
    width = max([5] + [len(c["name"]) for c in report["per_class"]])
    print(f"\n{'class':<{width}}  {'AP':>7}  {'AP50':>7}  {'AP75':>7}")
    for c in report["per_class"]:
        print(f"{c['name']:<{width}}  {_cell(c['ap'])}  {_cell(c['ap50'])}  {_cell(c['ap75'])}")


# -- VOC -------------------------------------------------------------------------------------
def voc_arrays(voc_dir: str, predictions: str, images_json: str | None):
    """Ground truths (from the XML files) and detections (the results, their images matched by
    file name and categories by name through the sidecar), as :mod:`workshop.evaluation` arrays,
    and the class names by id."""
    from workshop import evaluation as ev
    from workshop.data.formats import read_voc_folder

    root = Path(voc_dir)
    folder = root / "Annotations" if (root / "Annotations").is_dir() else root
    try:
        records = read_voc_folder(folder)
    except ValueError as err:
        raise ToolkitError(f"--voc {voc_dir}: {err}") from None
    if not records:
        raise ToolkitError(f"--voc {voc_dir}: no .xml files in {folder}")
    sidecar_path = images_json or str(Path(predictions).with_name(Path(predictions).stem + ".images.json"))
    sidecar = _read_json(sidecar_path, "--images")
    results = _read_json(predictions, "--predictions")
    names = sorted({n for r in records for n in r["names"]})
    class_of = {n: i + 1 for i, n in enumerate(names)}
    image_of = {Path(r["file_name"]).name: i for i, r in enumerate(records)}
    try:
        file_of_id = {int(im["id"]): Path(str(im["file_name"])).name for im in sidecar["images"]}
        name_of_cat = {int(c["id"]): str(c["name"]) for c in sidecar["categories"]}
    except (KeyError, TypeError, ValueError) as err:
        raise ToolkitError(f"--images {sidecar_path}: no COCO images/categories ({err})") from None
    gi, gc, gb, gd = [], [], [], []
    for i, r in enumerate(records):
        gi += [i] * len(r["names"])
        gc += [class_of[n] for n in r["names"]]
        gb.append(r["boxes"])
        gd += list(r["difficult"])
    gt = ev.ground_truths(gi, gc, np.concatenate(gb).reshape(-1, 4), difficult=gd,
                         images=list(range(len(records))), classes=list(range(1, len(names) + 1)))
    try:
        dt_all = ev.load_coco_detections(results)
    except ValueError as err:
        raise ToolkitError(f"--predictions {predictions}: {err}") from None
    img = [image_of.get(file_of_id.get(int(i), ""), -1) for i in dt_all.image_id]
    cls = [class_of.get(name_of_cat.get(int(c), ""), -1) for c in dt_all.class_id]
    keep = np.flatnonzero((np.array(img) >= 0) & (np.array(cls) >= 0))
    dt = ev.detections(np.array(img, np.int64)[keep], np.array(cls, np.int64)[keep], dt_all.boxes[keep],
                       dt_all.scores[keep])
    return gt, dt, ["background", *names], len(dt_all) - len(keep)


def voc_report(voc_dir: str, predictions: str, images_json: str | None, iou: float, method: str) -> dict:
    """``{"map": m, "per_class": [{"name", "ap"}], "iou": t, "method": ..., "unmatched": n}``."""
    from workshop import evaluation as ev

    gt, dt, names, unmatched = voc_arrays(voc_dir, predictions, images_json)
    try:
        result = ev.voc_evaluate(gt, dt, iou_threshold=iou, method=method)
    except ValueError as err:
        raise ToolkitError(str(err)) from None
    return {"map": _num(result.mean_ap), "iou": iou, "method": method, "unmatched": unmatched,
            "images": len(gt.images), "detections": len(dt),
            "per_class": [{"name": names[int(k)], "ap": _num(a)} for k, a in zip(result.class_ids, result.ap)]}


def print_voc(report: dict) -> None:
    print(f"{report['detections']} detections on {report['images']} images"
          + (f" ({report['unmatched']} on other images or classes left out)" if report["unmatched"] else ""))
    width = max([5] + [len(c["name"]) for c in report["per_class"]])
    print(f"{'class':<{width}}  {'AP@' + format(report['iou'], 'g'):>7}")
    for c in report["per_class"]:
        print(f"{c['name']:<{width}}  {_cell(c['ap'])}")
    print(f"{'mAP':<{width}}  {_cell(report['map'])}   ({report['method']} method)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.annotations:
            report = coco_report(args.annotations, args.predictions)
            print_coco(report)
            report.pop("summary")
        else:
            report = voc_report(args.voc, args.predictions, args.images, args.iou, args.voc_method)
            print_voc(report)
        if args.json_out:
            atomic_write_text(Path(args.json_out), json.dumps(report, indent=1))
    except ToolkitError as err:
        print(f"eval: {err}", file=sys.stderr)
        return 2
    return 0
