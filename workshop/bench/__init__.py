"""Speed, measured side by side: ``python -m workshop.bench`` (``make bench``).

* :mod:`workshop.bench.table`: every exercise's tiers, tuned kernels and industry baselines on
  the registry's benchmark problems;
* :mod:`workshop.bench.coco`: the course's COCO evaluation against pycocotools and
  faster-coco-eval.

(Grading speed has its own table: ``python -m workshop grade --bench``.)
"""

from .table import format_table, main, run

__all__ = ["format_table", "main", "run"]
