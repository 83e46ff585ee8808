"""What the toolkit's tests share: small inputs written into a temporary folder (a synthetic
scene, a tiny video, a COCO / VOC data set) and a served detector on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "data" / "photos" / "coffee.jpg"
ARTIFACTS = ROOT / "test-artifacts" / "toolkit"   # git-ignored


def write_scene(path: Path, seed: int = 5, size: int = 160):
    """A synthetic scene saved as PNG; returns the Scene (boxes xyxy, classes)."""
    from PIL import Image

    from workshop.data.synthetic import make_scene

    scene = make_scene(seed, image_size=size)
    Image.fromarray(scene.image).save(path)
    return scene


def write_video(path: Path, frames: int = 8, size: int = 128, fps: float = 10.0) -> None:
    """A tiny MPEG-4 video of a synthetic scene sliding sideways, written with OpenCV."""
    import cv2

    from workshop.data.synthetic import make_scene

    scene = make_scene(7, image_size=size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert writer.isOpened(), "OpenCV cannot write MPEG-4 here"
    for k in range(frames):
        writer.write(cv2.cvtColor(np.roll(scene.image, 3 * k, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()


def write_dataset(folder: Path, n: int = 8, seed: int = 123) -> Path:
    """``n`` synthetic scenes as PNGs and their COCO instances file (image ids from 100,
    category ids 10 x class id, so nothing lines up by accident); returns the JSON's path."""
    from PIL import Image

    from workshop.data.synthetic import CLASS_NAMES, make_detection_dataset

    folder.mkdir(parents=True, exist_ok=True)
    ds = make_detection_dataset(n, seed=seed)
    images, annotations = [], []
    for i, image in enumerate(ds.images):
        name = f"scene_{i:03d}.png"
        Image.fromarray(image).save(folder / name)
        images.append({"id": 100 + i, "file_name": name, "width": image.shape[1], "height": image.shape[0]})
        for (x1, y1, x2, y2), c in zip(ds.boxes[i].tolist(), ds.classes[i].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": 10 * c,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
    categories = [{"id": 10 * k, "name": name} for k, name in enumerate(CLASS_NAMES) if k]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m workshop serve`` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, log: Path, *options: str, timeout: float = 180):
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workshop", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             *options], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.origin + "/api/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError("the server did not start:\n" + self.log_path.read_text()[-3000:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


SHAPE_NAMES = ("coin", "tile", "wedge", "plus", "hoop")   # the synthetic classes 1..5, renamed
SIZES = ((128, 128, 1.0), (96, 128, 2.0), (128, 96, 1.5))  # (height, width) drawn, then scaled by


def write_training_set(folder: Path, n: int = 16, seed: int = 0) -> dict:
    """``n`` synthetic scenes of three sizes (128 x 128, 256 x 192, 144 x 192 pixels: drawn,
    then enlarged) as PNGs, with the same objects as a COCO file and as a Pascal VOC root.

    Returns ``{"coco": instances.json, "images": folder of the PNGs, "voc": VOC root (Annotations/,
    JPEGImages/), "scenes": [(file name, (H, W), boxes float (N, 4) xyxy, classes (N,))]}``; the
    classes are named :data:`SHAPE_NAMES` (COCO category ids 10, 20, ...).
    """
    import shutil

    from PIL import Image

    from workshop.data.formats import write_voc
    from workshop.data.synthetic import make_scene

    images = folder / "images"
    annotations, jpeg = folder / "voc" / "Annotations", folder / "voc" / "JPEGImages"
    for d in (images, annotations, jpeg):
        d.mkdir(parents=True, exist_ok=True)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": 10 * (k + 1), "name": name} for k, name in enumerate(SHAPE_NAMES)]}
    scenes = []
    for i in range(n):
        h, w, scale = SIZES[i % len(SIZES)]
        scene = make_scene((seed, i), image_size=(h, w))
        H, W = int(round(h * scale)), int(round(w * scale))
        name = f"scene_{i:03d}.png"
        Image.fromarray(scene.image).resize((W, H), Image.BILINEAR).save(images / name)
        shutil.copy(images / name, jpeg / name)
        boxes = scene.boxes * np.array([W / w, H / h, W / w, H / h])
        scenes.append((name, (H, W), boxes, scene.classes))
        coco["images"].append({"id": 100 + i, "file_name": name, "width": W, "height": H})
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), scene.classes.tolist()):
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": 100 + i,
                                        "category_id": 10 * int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                        "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        write_voc({"file_name": name, "height": H, "width": W, "boxes": boxes,
                   "names": [SHAPE_NAMES[c - 1] for c in scene.classes]}, annotations / f"scene_{i:03d}.xml")
    path = folder / "instances.json"
    path.write_text(json.dumps(coco))
    return {"coco": path, "images": images, "voc": folder / "voc", "scenes": scenes}
