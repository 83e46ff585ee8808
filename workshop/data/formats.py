"""Read and write detection annotations: COCO JSON and Pascal VOC XML.

Both readers return per-image **records**, plain dicts with numpy arrays, boxes in this course's
convention (float64 ``(N, 4)`` xyxy, continuous pixel coordinates, no "+1"; see
:mod:`workshop.conventions`)::

    {"image_id": int, "file_name": str, "height": int, "width": int,
     "boxes": float64 (N, 4) xyxy, "classes": int64 (N,), ...format-specific keys...}

COCO JSON
  ``bbox`` is ``[x, y, width, height]`` in continuous pixel coordinates, so the conversion is
  ``x2 = x + width`` (no "+1"). Category ids are arbitrary integers (COCO itself skips some);
  ``classes`` maps them to contiguous ids ``1..K`` in increasing category-id order (0 stays the
  background), ``category_ids`` keeps the originals. Extra keys: ``category_ids``, ``iscrowd``
  (bool ``(N,)``), ``area`` (float ``(N,)``: the annotation's own ``area``, which COCO defines as
  the segmentation area, or the box area when missing), ``annotation_ids``, ``segmentation``
  (list, kept as is).

Pascal VOC XML
  ``<xmin>``, ``<ymin>``, ``<xmax>``, ``<ymax>`` are **1-based, inclusive pixel indices**: a box
  covering the first ten pixel columns has ``xmin=1, xmax=10``. In continuous 0-based coordinates
  that is ``x1 = xmin - 1``, ``x2 = xmax`` (width ``xmax - xmin + 1``); the writer does the
  inverse (``xmin = x1 + 1``, ``xmax = x2``). Extra keys: ``names`` (list of str), ``difficult``
  and ``truncated`` (bool ``(N,)``), ``depth``. ``classes`` is filled when ``class_names`` is given
  (the index of each name in it).

Malformed files raise :class:`ValueError` saying what was expected and where.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workshop.conventions import as_boxes, convert_boxes

# ---------------------------------------------------------------------------------------------
# COCO


def _load_json(source) -> dict:
    if isinstance(source, dict):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"COCO file not found: {path}")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    raise ValueError(f"expected a path to a COCO JSON file or a dict, got {type(source).__name__}")


def _require(obj: Any, key: str, where: str, kind=None):
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")  # noqa: TRY004 (ValueError by convention)
    if key not in obj:
        raise ValueError(f"{where}: missing key {key!r}")
    value = obj[key]
    if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{where}: {key!r} should be {names}, got {value!r}")
    return value


def read_coco(source) -> tuple[list[dict], list[dict]]:
    """Read a COCO detection file into per-image records.

    Args:
      source: path to a COCO JSON file, or the already-parsed dict.

    Returns:
      ``(records, categories)``: one record per entry of ``images`` (in file order, images
      without annotations included, with ``(0, 4)`` boxes), and the categories sorted by id
      (``classes == k`` means ``categories[k - 1]``).

    Raises:
      ValueError: not JSON, missing ``images``/``annotations``/``categories``, a bbox that is not
        four finite numbers with width, height >= 0, duplicate ids, or an annotation naming an
        unknown image or category.
    """
    data = _load_json(source)
    if not isinstance(data, dict):
        raise ValueError(f"COCO: expected a JSON object at the top level, got {type(data).__name__}")  # noqa: TRY004
    images = _require(data, "images", "COCO", list)
    anns = _require(data, "annotations", "COCO", list)
    cats = _require(data, "categories", "COCO", list)

    categories = []
    for i, cat in enumerate(cats):
        cid = _require(cat, "id", f"categories[{i}]", int)
        name = _require(cat, "name", f"categories[{i}]", str)
        entry = {"id": cid, "name": name}
        if "supercategory" in cat:
            entry["supercategory"] = cat["supercategory"]
        categories.append(entry)
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        raise ValueError(f"categories: duplicate category ids in {ids}")
    categories.sort(key=lambda c: c["id"])
    cat_to_class = {c["id"]: k + 1 for k, c in enumerate(categories)}

    records: list[dict] = []
    by_image: dict[int, int] = {}
    for i, img in enumerate(images):
        where = f"images[{i}]"
        iid = _require(img, "id", where, int)
        if iid in by_image:
            raise ValueError(f"{where}: duplicate image id {iid}")
        h = _require(img, "height", where, int)
        w = _require(img, "width", where, int)
        if h <= 0 or w <= 0:
            raise ValueError(f"{where}: expected positive height and width, got {h}x{w}")
        by_image[iid] = len(records)
        records.append({"image_id": iid, "file_name": str(img.get("file_name", "")), "height": h,
                        "width": w, "_anns": []})

    seen_ann_ids = set()
    for j, ann in enumerate(anns):
        where = f"annotations[{j}]"
        iid = _require(ann, "image_id", where, int)
        cid = _require(ann, "category_id", where, int)
        bbox = _require(ann, "bbox", where, list)
        if iid not in by_image:
            raise ValueError(f"{where}: image_id {iid} is not in 'images'")
        if cid not in cat_to_class:
            raise ValueError(f"{where}: category_id {cid} is not in 'categories'")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     and math.isfinite(v) for v in bbox):
            raise ValueError(f"{where}: bbox should be four finite numbers [x, y, width, height], got {bbox}")
        aid = ann.get("id", None)
        if bbox[2] < 0 or bbox[3] < 0:
            named = "" if aid is None else f" (annotation id {aid})"
            raise ValueError(f"{where}{named}: bbox {bbox} has a negative width or height, so x2 < x1 "
                             "or y2 < y1 (expected xywh)")
        if aid is not None:
            if aid in seen_ann_ids:
                raise ValueError(f"{where}: duplicate annotation id {aid}")
            seen_ann_ids.add(aid)
        records[by_image[iid]]["_anns"].append((j, ann))

    for rec in records:
        rows = rec.pop("_anns")
        xywh = np.array([ann["bbox"] for _, ann in rows], np.float64).reshape(-1, 4)
        boxes = convert_boxes(xywh, "xywh", "xyxy")
        cids = np.array([ann["category_id"] for _, ann in rows], np.int64)
        area = np.array([float(ann["area"]) if isinstance(ann.get("area"), (int, float))
                         else float(ann["bbox"][2] * ann["bbox"][3]) for _, ann in rows], np.float64)
        rec.update(
            boxes=boxes,
            classes=np.array([cat_to_class[c] for c in cids], np.int64),
            category_ids=cids,
            iscrowd=np.array([bool(ann.get("iscrowd", 0)) for _, ann in rows], bool),
            area=area,
            annotation_ids=np.array([ann.get("id", j + 1) for j, ann in rows], np.int64),
            segmentation=[ann.get("segmentation") for _, ann in rows],
        )
    return records, categories


def records_to_coco(records: Sequence[dict], categories: Sequence[dict]) -> dict:
    """Per-image records back to a COCO dict (inverse of :func:`read_coco`).

    Each record needs ``height``, ``width``, ``boxes`` (xyxy) and either ``category_ids`` or
    ``classes`` (``1..K``, mapped to ``categories[k - 1]["id"]``, categories sorted by id);
    ``image_id`` (default: position + 1), ``file_name``, ``iscrowd``, ``area`` (default: box
    area), ``annotation_ids`` and ``segmentation`` are used when present.
    """
    cats = sorted(({"id": int(c["id"]), "name": str(c["name"]),
                    **({"supercategory": c["supercategory"]} if "supercategory" in c else {})}
                   for c in categories), key=lambda c: c["id"])
    valid_ids = {c["id"] for c in cats}
    out_images, out_anns = [], []
    next_ann = 1
    for i, rec in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a dict, got {type(rec).__name__}")  # noqa: TRY004
        boxes = as_boxes(_require(rec, "boxes", where), name=f"{where}['boxes']")
        n = len(boxes)
        if "category_ids" in rec:
            cids = np.asarray(rec["category_ids"], np.int64).reshape(-1)
        elif "classes" in rec:
            classes = np.asarray(rec["classes"], np.int64).reshape(-1)
            if classes.size and (classes.min() < 1 or classes.max() > len(cats)):
                raise ValueError(f"{where}: classes should be in 1..{len(cats)}, got {classes.tolist()}")
            cids = np.array([cats[c - 1]["id"] for c in classes], np.int64)
        else:
            raise ValueError(f"{where}: needs 'category_ids' or 'classes'")
        if cids.shape != (n,):
            raise ValueError(f"{where}: {n} boxes but {cids.size} category ids")
        bad = [int(c) for c in cids if int(c) not in valid_ids]
        if bad:
            raise ValueError(f"{where}: category id {bad[0]} is not in categories")
        iid = int(rec.get("image_id", i + 1))
        out_images.append({"id": iid, "file_name": str(rec.get("file_name", "")),
                           "height": int(_require(rec, "height", where)),
                           "width": int(_require(rec, "width", where))})
        xywh = convert_boxes(boxes, "xyxy", "xywh")
        area = np.asarray(rec.get("area", xywh[:, 2] * xywh[:, 3]), np.float64).reshape(-1)
        crowd = np.asarray(rec.get("iscrowd", np.zeros(n, bool)), bool).reshape(-1)
        ann_ids = rec.get("annotation_ids")
        segs = rec.get("segmentation")
        for k in range(n):
            if ann_ids is not None:
                aid = int(ann_ids[k])
            else:
                aid = next_ann
            next_ann = max(next_ann, aid) + 1
            ann = {"id": aid, "image_id": iid, "category_id": int(cids[k]),
                   "bbox": [_num(v) for v in xywh[k]], "area": _num(area[k]),
                   "iscrowd": int(crowd[k])}
            if segs is not None and segs[k] is not None:
                ann["segmentation"] = segs[k]
            out_anns.append(ann)
    return {"images": out_images, "annotations": out_anns, "categories": cats}


def write_coco(records: Sequence[dict], categories: Sequence[dict], path) -> dict:
    """Write records as a COCO JSON file (see :func:`records_to_coco`); returns the dict."""
    data = records_to_coco(records, categories)
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")
    return data


def _num(v: float):
    """An integral float as int (``10.0 -> 10``), others unchanged: tidy files, exact round trips."""
    v = float(v)
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


# ---------------------------------------------------------------------------------------------
# Pascal VOC


def _text(node: ET.Element, tag: str, where: str, required: bool = True) -> str | None:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise ValueError(f"{where}: missing <{tag}>")
        return None
    return child.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: <{tag}> should be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: <{tag}> is not finite: {text!r}")
    return value


def _flag(node: ET.Element, tag: str, where: str) -> bool:
    text = _text(node, tag, where, required=False)
    if text is None:
        return False
    if text not in ("0", "1"):
        raise ValueError(f"{where}: <{tag}> should be 0 or 1, got {text!r}")
    return text == "1"


def read_voc(source, class_names: Sequence[str] | None = None) -> dict:
    """Read one Pascal VOC annotation.

    Args:
      source: path to an ``.xml`` file, or the XML text itself (a string starting with ``<``).
      class_names: optional names by class id (e.g. ``("background", "cat", "dog")``); when
        given, ``record["classes"]`` holds each object's index in it.

    Returns:
      record with ``file_name``, ``height``, ``width``, ``depth``, ``boxes`` (float64 ``(N, 4)``
      xyxy, ``x1 = xmin - 1``, ``x2 = xmax``), ``names``, ``difficult``, ``truncated`` and, with
      ``class_names``, ``classes``.

    Raises:
      ValueError: not XML, no ``<annotation>`` root, missing size or bndbox fields, non-numeric
        or inverted coordinates (``xmax < xmin``), unknown class names.
    """
    if isinstance(source, (str, os.PathLike)) and not str(source).lstrip().startswith("<"):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"VOC file not found: {path}")
        text, label = path.read_text(encoding="utf-8"), str(path)
    elif isinstance(source, str):
        text, label = source, "VOC XML"
    else:
        raise ValueError(f"expected a path to a VOC .xml file or XML text, got {type(source).__name__}")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ValueError(f"{label}: not valid XML ({err})") from None
    if root.tag != "annotation":
        raise ValueError(f"{label}: expected an <annotation> root element, got <{root.tag}>")
    size = root.find("size")
    if size is None:
        raise ValueError(f"{label}: missing <size>")
    width = int(_number(size, "width", f"{label} <size>"))
    height = int(_number(size, "height", f"{label} <size>"))
    depth_text = _text(size, "depth", f"{label} <size>", required=False)
    boxes, names, difficult, truncated = [], [], [], []
    for k, obj in enumerate(root.findall("object")):
        where = f"{label} object {k}"
        names.append(_text(obj, "name", where))
        bnd = obj.find("bndbox")
        if bnd is None:
            raise ValueError(f"{where}: missing <bndbox>")
        xmin, ymin, xmax, ymax = (_number(bnd, t, f"{where} <bndbox>") for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise ValueError(f"{where}: inverted box xmin={xmin:g} xmax={xmax:g} ymin={ymin:g} ymax={ymax:g}")
        boxes.append((xmin - 1.0, ymin - 1.0, xmax, ymax))      # 1-based inclusive -> continuous
        difficult.append(_flag(obj, "difficult", where))
        truncated.append(_flag(obj, "truncated", where))
    record = {
        "file_name": _text(root, "filename", label, required=False) or "",
        "height": height, "width": width,
        "depth": int(depth_text) if depth_text and depth_text.isdigit() else 3,
        "boxes": np.array(boxes, np.float64).reshape(-1, 4),
        "names": names,
        "difficult": np.array(difficult, bool),
        "truncated": np.array(truncated, bool),
    }
    if class_names is not None:
        lookup = {n: i for i, n in enumerate(class_names)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise ValueError(f"{label}: class {unknown[0]!r} is not in class_names {list(class_names)}")
        record["classes"] = np.array([lookup[n] for n in names], np.int64)
    return record


def read_voc_folder(folder, class_names: Sequence[str] | None = None) -> list[dict]:
    """:func:`read_voc` on every ``*.xml`` file of ``folder`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"VOC folder not found: {folder}")
    return [read_voc(p, class_names) for p in sorted(folder.glob("*.xml"))]


def voc_to_xml(record: dict, class_names: Sequence[str] | None = None) -> str:
    """A record as Pascal VOC XML text (inverse of :func:`read_voc`).

    Needs ``height``, ``width``, ``boxes`` (xyxy) and ``names`` or (``classes`` and
    ``class_names``); ``file_name``, ``depth``, ``difficult`` and ``truncated`` are optional.
    Coordinates are written as ``xmin = x1 + 1``, ``xmax = x2`` (integers when integral).
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a record dict, got {type(record).__name__}")  # noqa: TRY004
    boxes = as_boxes(_require(record, "boxes", "record"), name="record['boxes']")
    n = len(boxes)
    if "names" in record:
        names = [str(x) for x in record["names"]]
    elif "classes" in record and class_names is not None:
        names = [str(class_names[int(c)]) for c in np.asarray(record["classes"]).reshape(-1)]
    else:
        raise ValueError("record: needs 'names', or 'classes' together with class_names")
    if len(names) != n:
        raise ValueError(f"record: {n} boxes but {len(names)} names")
    difficult = np.asarray(record.get("difficult", np.zeros(n, bool)), bool).reshape(-1)
    truncated = np.asarray(record.get("truncated", np.zeros(n, bool)), bool).reshape(-1)
    if difficult.shape != (n,) or truncated.shape != (n,):
        raise ValueError(f"record: 'difficult' and 'truncated' need one flag per box ({n})")

    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = str(record.get("file_name", ""))
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(_require(record, "width", "record")))
    ET.SubElement(size, "height").text = str(int(_require(record, "height", "record")))
    ET.SubElement(size, "depth").text = str(int(record.get("depth", 3)))
    for k in range(n):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[k]
        ET.SubElement(obj, "truncated").text = str(int(truncated[k]))
        ET.SubElement(obj, "difficult").text = str(int(difficult[k]))
        bnd = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = boxes[k]
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise ValueError(f"record: box {k} {boxes[k].tolist()} is narrower than one pixel, "
                             "which VOC's inclusive integer pixel indices cannot represent")
        for tag, v in (("xmin", x1 + 1.0), ("ymin", y1 + 1.0), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bnd, tag).text = repr(_num(v))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_voc(record: dict, path, class_names: Sequence[str] | None = None) -> str:
    """Write a record as a VOC ``.xml`` file (see :func:`voc_to_xml`); returns the XML text."""
    text = voc_to_xml(record, class_names)
    Path(path).write_text(text, encoding="utf-8")
    return text
