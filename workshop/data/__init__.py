"""The course's data, all offline.

* :mod:`workshop.data.synthetic`  seeded synthetic scenes (boxes, instance and semantic masks) and
  a source/target classification set for transfer learning.
* :mod:`workshop.data.boxes`      random boxes for timing and testing (around objects, box/anchor
  pairs, distinct scores): what the exercise registry's random and benchmark cases are made of.
* :mod:`workshop.data.photos`     a few real photographs (from scikit-image) with hand-drawn boxes.
* :mod:`workshop.data.formats`    COCO JSON and Pascal VOC XML readers and writers.
* :mod:`workshop.data.pipeline`   a ``tf.data`` pipeline with box- and mask-aware augmentation
  (imports TensorFlow; import it explicitly or use the lazy attribute below).

Boxes everywhere are float ``(N, 4)`` xyxy in continuous pixel coordinates (see
:mod:`workshop.conventions`). Importing this package does not import TensorFlow.
"""

from workshop.data.boxes import box_anchor_pairs, clustered_boxes, distinct_scores, random_boxes
from workshop.data.formats import (
    read_coco,
    read_voc,
    read_voc_folder,
    records_to_coco,
    voc_to_xml,
    write_coco,
    write_voc,
)
from workshop.data.photos import load_photos
from workshop.data.synthetic import (
    CLASS_NAMES,
    NUM_CLASSES,
    ClassificationSet,
    DetectionDataset,
    Scene,
    make_classification_set,
    make_detection_dataset,
    make_scene,
)

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "ClassificationSet",
    "DetectionDataset",
    "Scene",
    "box_anchor_pairs",
    "clustered_boxes",
    "distinct_scores",
    "load_photos",
    "make_classification_set",
    "make_detection_dataset",
    "make_scene",
    "pipeline",
    "random_boxes",
    "read_coco",
    "read_voc",
    "read_voc_folder",
    "records_to_coco",
    "voc_to_xml",
    "write_coco",
    "write_voc",
]


def __getattr__(name):
    if name == "pipeline":  # imports TensorFlow, so only on demand
        import importlib

        return importlib.import_module("workshop.data.pipeline")
    raise AttributeError(f"module 'workshop.data' has no attribute {name!r}")
