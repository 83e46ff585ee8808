"""``python -m workshop export --bench``: frames per second of four ways to run the detector on
held-out scenes and photos, and training steps per second on one and two logical CPU devices
(workshop/toolkit/benchmark.py).

The whole command with ``--quick`` takes about a minute (the training measurement is a child
process that starts TensorFlow and traces the training step twice), so it is marked slow; its
fast twin measures the inference rows and one device's training step in this process and
checks the same table.
"""

import re

import pytest

from workshop.toolkit import benchmark, export

pytest.importorskip("tensorflow")

INFERENCE = ("Keras float32", "TFLite float32", "TFLite int8",
             "Keras float32 + notebook stages (roi_align, batched_nms)")


def _check_table(table: str, training_rows: int) -> None:
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    detectors = [r for r in rows if not r.startswith(("| detector", "| training"))]
    cells = [r[2:].split(" | ")[0] for r in detectors]
    for name in INFERENCE:
        assert sum(c == name or c.startswith(f"{name} (") for c in cells) == 1, (name, table)
    assert sum("global batch 8" in r for r in detectors) == training_rows, table
    for row in detectors:
        numbers = [float(x) for x in re.findall(r"\| ([0-9.]+) ", row + " ")]
        assert len(numbers) == 2 and all(n > 0 for n in numbers), row


def test_inference_rows_and_one_device_training(tmp_path):
    """The fast twin: every inference row, and the training step on one device, in this process."""
    from workshop.checkpoint import ready_dir

    sizes = benchmark.Sizes(scenes=3, photo_passes=1, train_steps=1, train_warmup=1, calibration=2)
    lines = []
    rows = benchmark.inference_rows(ready_dir(), sizes, benchmark.default_stage_notebooks(), lines.append)
    assert [r["detector"].split(" (")[0] for r in rows][:3] == ["Keras float32", "TFLite float32", "TFLite int8"]
    assert "notebook stages: roi_align_numpy in 06_roi_pooling.ipynb; batched_nms_numpy in 03_iou_nms.ipynb" in lines
    one = benchmark._train_speed(1, 1, 1, ready_dir())
    assert one["replicas"] == 1 and one["steps"] == 1 and one["steps_per_s"] > 0
    training = [{"training": "one device (default strategy), global batch 8", "steps_per_s": one["steps_per_s"],
                 "images_per_s": 8 * one["steps_per_s"]}]
    _check_table(benchmark.format_tables({"inference": rows, "training": training}, sizes), training_rows=1)


@pytest.mark.slow
def test_bench_quick_prints_every_row(capsys):
    assert export.main(["--bench", "--quick"]) == 0
    table = capsys.readouterr().out
    _check_table(table, training_rows=2)
    assert "MirroredStrategy, 2 logical CPU devices" in table
    assert "one device (default strategy)" in table


def test_bench_refuses_a_bad_option(capsys):
    assert export.main(["--bench", "--scenes", "0"]) == 2
    assert "--scenes: expected at least 1" in capsys.readouterr().err
