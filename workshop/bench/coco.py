"""Benchmark: COCO bbox evaluation on arrays vs pycocotools vs faster-coco-eval.

    python -m workshop.bench.coco            # 5,000 images, 20 classes (pycocotools takes minutes)
    python -m workshop.bench.coco --quick    # 500 images

A generated set: per image about 10 ground truths (some crowds, sizes over all area ranges)
and 50 detections (jittered copies of the objects, duplicates, strays; scores with ties).
Coordinates are multiples of 1/8 so xyxy <-> xywh is exact and all three must agree to the
last bit. Each row times one implementation end to end; for the two COCO APIs the "load" phase
(building the COCO objects from dicts and ``loadRes``) is reported apart from
evaluate + accumulate + summarize, and the total includes both.

``run(quick)`` returns the rows (dicts) for ``workshop.bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np

N_IMAGES, N_CLASSES, GT_PER_IMAGE, DT_PER_IMAGE = 5000, 20, 10, 50


def make_dataset(n_images: int = N_IMAGES, n_classes: int = N_CLASSES, gt_per_image: int = GT_PER_IMAGE,
                 dt_per_image: int = DT_PER_IMAGE, seed: int = 0):
    """(GroundTruths, Detections) of a random set (see the module docstring)."""
    from ..reference.metrics_coco import detections, ground_truths

    rng = np.random.default_rng(seed)
    n_gt = rng.poisson(gt_per_image, n_images)
    g_img = np.repeat(np.arange(1, n_images + 1), n_gt)
    G = len(g_img)
    g_cls = rng.integers(1, n_classes + 1, G)
    size = np.exp(rng.uniform(np.log(4), np.log(300), (G, 1))) * rng.uniform(0.5, 1.5, (G, 2))
    xy = rng.uniform(0, 640, (G, 2))
    g_box = np.round(np.concatenate([xy, xy + size], axis=1) * 8) / 8
    crowd = rng.random(G) < 0.02
    area = (g_box[:, 2] - g_box[:, 0]) * (g_box[:, 3] - g_box[:, 1]) * rng.uniform(0.6, 1.0, G)

    n_dt = rng.poisson(dt_per_image, n_images)
    d_img = np.repeat(np.arange(1, n_images + 1), n_dt)
    D = len(d_img)
    # 60% of detections near an object of their image (same class 90% of the time), 40% strays
    first = np.r_[0, np.cumsum(n_gt)[:-1]]
    has = n_gt[d_img - 1] > 0
    near = has & (rng.random(D) < 0.6)
    pick = first[d_img - 1] + (rng.random(D) * np.maximum(n_gt[d_img - 1], 1)).astype(int)
    pick = np.where(near, pick, 0)
    base = g_box[pick] if G else np.zeros((D, 4))
    wh = base[:, 2:] - base[:, :2]
    jitter = base + np.repeat(wh, 2, axis=1).reshape(D, 2, 2).transpose(0, 2, 1).reshape(D, 4) * \
        rng.normal(0, 0.1, (D, 4))
    sxy = rng.uniform(0, 640, (D, 2))
    stray = np.concatenate([sxy, sxy + np.exp(rng.uniform(np.log(4), np.log(300), (D, 2)))], axis=1)
    d_box = np.where(near[:, None], jitter, stray)
    d_box[:, 2:] = np.maximum(d_box[:, 2:], d_box[:, :2] + 1)
    d_box = np.round(d_box * 8) / 8
    same = rng.random(D) < 0.9
    d_cls = np.where(near & same, g_cls[pick] if G else 1, rng.integers(1, n_classes + 1, D))
    score = np.round(np.where(near, rng.beta(5, 2, D), rng.beta(2, 5, D)), 3)   # ties at 3 decimals
    gt = ground_truths(g_img, g_cls, g_box, crowd=crowd, area=area,
                       images=np.arange(1, n_images + 1), classes=np.arange(1, n_classes + 1))
    return gt, detections(d_img, d_cls, d_box, score)


def _time(fn, repeat: int = 1):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _run_cocoapi(module_coco, module_eval, gt_dict, results):
    """(load seconds, eval seconds, stats) for a pycocotools-like API."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        t0 = time.perf_counter()
        coco_gt = module_coco()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        t1 = time.perf_counter()
        ev = module_eval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, np.asarray(ev.stats, np.float64)


def run(quick: bool = False, with_pycocotools: bool = True) -> list[dict]:
    """Time the three implementations; one row each: name, images, detections, load_s, eval_s,
    total_s, max |stats - ours|."""
    import copy

    from ..reference.metrics_coco import coco_evaluate, coco_ground_truth, coco_results

    n_images = 500 if quick else N_IMAGES
    gt, dt = make_dataset(n_images)
    rows = []
    common = {"images": n_images, "ground_truths": len(gt), "detections": len(dt)}
    t_ours, ours = _time(lambda: coco_evaluate(gt, dt), repeat=1 if not quick else 3)
    rows.append({"implementation": "workshop coco_evaluate (arrays)", **common, "load_s": 0.0,
                 "eval_s": t_ours, "total_s": t_ours, "max_abs_diff": 0.0, "AP": ours.stats[0]})
    gt_dict, results = coco_ground_truth(gt), coco_results(dt)
    try:
        from faster_coco_eval import COCO as FCOCO
        from faster_coco_eval import COCOeval_faster
        load, ev, stats = _run_cocoapi(FCOCO, lambda g, d, t: COCOeval_faster(g, d, t, print_function=lambda *a: None),
                                       copy.deepcopy(gt_dict), copy.deepcopy(results))
        rows.append({"implementation": "faster-coco-eval COCOeval_faster", **common, "load_s": load,
                     "eval_s": ev, "total_s": load + ev, "max_abs_diff": float(np.abs(stats - ours.stats).max()),
                     "AP": stats[0]})
    except ImportError as err:  # pragma: no cover - optional baseline
        rows.append({"implementation": f"faster-coco-eval unavailable: {err}", **common})
    if with_pycocotools:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        load, ev, stats = _run_cocoapi(COCO, COCOeval, copy.deepcopy(gt_dict), copy.deepcopy(results))
        rows.append({"implementation": "pycocotools COCOeval", **common, "load_s": load, "eval_s": ev,
                     "total_s": load + ev, "max_abs_diff": float(np.abs(stats - ours.stats).max()),
                     "AP": stats[0]})
    return rows


def format_rows(rows: list[dict]) -> str:
    head = f"{'implementation':<36} {'images':>6} {'dets':>7} {'load s':>7} {'eval s':>7} {'total s':>8} {'max|diff|':>9} {'AP':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "total_s" not in r:
            lines.append(r["implementation"])
            continue
        lines.append(f"{r['implementation']:<36} {r['images']:>6} {r['detections']:>7} {r['load_s']:>7.2f} "
                     f"{r['eval_s']:>7.2f} {r['total_s']:>8.2f} {r['max_abs_diff']:>9.1e} {r['AP']:>7.4f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 images instead of 5,000")
    parser.add_argument("--no-pycocotools", action="store_true", help="skip the slow reference")
    args = parser.parse_args(argv)
    print(format_rows(run(args.quick, with_pycocotools=not args.no_pycocotools)))


if __name__ == "__main__":
    main()
