"""workshop.bench prints its table (quick mode: tiny sizes) and is generic over the registry."""

import io

import numpy as np

from workshop.bench import table as bench
from workshop.exercises.spec import Case


def test_quick_table_prints_for_iou_and_nms():
    out = io.StringIO()
    rows = bench.run(only=["iou", "nms"], repeat=1, quick=True, out=out)
    text = out.getvalue()
    assert "implementation" in text and "vs best industry" in text
    for name in ("loops", "numpy", "tf", "[pycocotools]", "[cv2.dnn.NMSBoxes]", "[tf.image.non_max_suppression]"):
        assert name in text, name
    assert all(r.seconds is not None and r.seconds > 0 for r in rows), [r for r in rows if r.seconds is None]
    # every tier agrees with the reference on the benchmark problems
    assert all(r.agrees for r in rows if r.kind == "tier")
    assert {r.exercise for r in rows} == {"iou", "nms"}


def test_loop_tier_extrapolated_when_over_budget():
    out = io.StringIO()
    rows = bench.run(only=["iou"], repeat=1, quick=True, loop_budget=0.0, out=out)
    loops = [r for r in rows if r.impl == "loops"]
    assert loops and all(r.estimated and "extrapolated" in r.note for r in loops)
    assert "~" in out.getvalue()


def test_shrink_cuts_arrays_and_caps():
    case = Case("c", (np.zeros((10, 4)), np.zeros(10), 0.5), {"max_output_size": 8})
    small = bench.shrink(case, 3)
    assert small.args[0].shape == (3, 4) and small.args[1].shape == (3,) and small.args[2] == 0.5
    assert small.kwargs["max_output_size"] == 3


def test_main_rejects_unknown_exercise():
    import pytest

    with pytest.raises(SystemExit):
        bench.main(["--only", "no_such_exercise", "--quick"])
