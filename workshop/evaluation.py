"""Detection evaluation for your own data sets: COCO and Pascal VOC metrics on arrays, and COCO
JSON in and out.

    from workshop.evaluation import ground_truths, detections, coco_evaluate
    gt = ground_truths(image_id, class_id, boxes_xyxy, crowd=..., area=...)
    dt = detections(image_id, class_id, boxes_xyxy, scores)
    print(coco_evaluate(gt, dt).summary())     # pycocotools' 12 numbers, to the last bit

This is the course's reference implementation (chapter 9 builds its pieces), re-exported for
demonstrations and real data; graded solution cells may not use it.
"""

from .reference.metrics_coco import (  # noqa: F401
    STAT_NAMES,
    CocoResult,
    VocResult,
    coco_evaluate,
    coco_ground_truth,
    coco_results,
    detections,
    ground_truths,
    load_coco_detections,
    load_coco_ground_truth,
    pycocotools_evaluate,
    save_coco_detections,
    save_coco_ground_truth,
    voc_evaluate,
)
