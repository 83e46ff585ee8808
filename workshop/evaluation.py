"""Detection evaluation for your own data sets: COCO and Pascal VOC metrics on arrays, and COCO
JSON in and out.

    from workshop.evaluation import ground_truths, detections, coco_evaluate
    gt = ground_truths(image_id, class_id, boxes_xyxy, crowd=..., area=...)
    dt = detections(image_id, class_id, boxes_xyxy, scores)
    print(coco_evaluate(gt, dt).summary())     # pycocotools' 12 numbers, to the last bit

This is the course's reference implementation (chapter 9 builds its pieces), re-exported for
demonstrations and real data; graded solution cells may not use it.
"""

__all__ = [
    "STAT_NAMES",  # noqa: F822  (loaded on first use by __getattr__)
    "CocoResult",  # noqa: F822  (loaded on first use by __getattr__)
    "VocResult",  # noqa: F822  (loaded on first use by __getattr__)
    "coco_evaluate",  # noqa: F822  (loaded on first use by __getattr__)
    "coco_ground_truth",  # noqa: F822  (loaded on first use by __getattr__)
    "coco_results",  # noqa: F822  (loaded on first use by __getattr__)
    "detections",  # noqa: F822  (loaded on first use by __getattr__)
    "ground_truths",  # noqa: F822  (loaded on first use by __getattr__)
    "load_coco_detections",  # noqa: F822  (loaded on first use by __getattr__)
    "load_coco_ground_truth",  # noqa: F822  (loaded on first use by __getattr__)
    "pycocotools_evaluate",  # noqa: F822  (loaded on first use by __getattr__)
    "save_coco_detections",  # noqa: F822  (loaded on first use by __getattr__)
    "save_coco_ground_truth",  # noqa: F822  (loaded on first use by __getattr__)
    "voc_evaluate",  # noqa: F822  (loaded on first use by __getattr__)
]


def __getattr__(name: str):
    """Load the evaluation (the course's answers to chapter 9) on first use, not on import."""
    if name in __all__:
        from .reference import metrics_coco

        return getattr(metrics_coco, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
