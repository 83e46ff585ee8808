"""The benchmark table: every exercise that declares ``benchmarks()``, every tier and every
industry baseline, timed on the declared problem sizes.

    python -m workshop.bench [--only iou,nms] [--repeat K] [--quick] [--loop-budget SECONDS]

An exercise joins by declaring, in its registry entry, ``benchmarks`` (``() -> list[Case]``, the
large problems) and optionally ``kernels`` (its tuned versions, rows ``kernel <tier>``) and
``baselines`` (name -> ``"module:function"`` with the exercise's signature). Nothing here is
specific to one exercise.

Timing: inputs are prepared outside the clock (tensors for the TF tier, which runs as
``tf.function(jit_compile=exercise.tf_jit)``; its output is pulled to numpy inside the clock).
Each implementation gets one warm-up call, then the median of ``--repeat`` calls. The loops tier
is timed once without warm-up; first it is timed on two shrunken copies of the case (every array
argument cut to its first rows), a power law is fitted, and when the full size would take longer
than ``--loop-budget`` seconds the extrapolated time is reported instead (marked ``~``).
``--quick`` shrinks every case to a few hundred rows (for tests).

Columns: median time; ``vs loops`` = loops time / this time; ``vs best industry`` = this time /
the fastest baseline's time (below 1 is faster); ``agrees``: the output matches the reference
tier's output (industry baselines may differ by design, e.g. OpenCV's NMS on zero-area boxes).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..exercises import all_exercises
from ..exercises.spec import Case, Exercise, resolve

QUICK_ROWS = 300


@dataclass
class Row:
    exercise: str
    size: str
    impl: str
    kind: str            # "tier" | "baseline"
    seconds: float | None
    estimated: bool = False
    note: str = ""
    agrees: bool | None = None


# -- shrinking a case ---------------------------------------------------------------------------
def shrink(case: Case, rows: int) -> Case:
    """The case with every array argument cut to its first ``rows`` rows (integer keyword
    arguments larger than that are cut too)."""
    cut = lambda v: v[:rows] if isinstance(v, np.ndarray) and v.ndim >= 1 else v  # noqa: E731
    kwargs = {k: (min(v, rows) if isinstance(v, int) and not isinstance(v, bool) else cut(v))
              for k, v in case.kwargs.items()}
    return Case(case.name, tuple(cut(a) for a in case.args), kwargs, case.public)


def _rows(case: Case) -> int:
    return max([a.shape[0] for a in list(case.args) + list(case.kwargs.values())
                if isinstance(a, np.ndarray) and a.ndim >= 1] or [1])


# -- calling one implementation -----------------------------------------------------------------
def _materialize(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return type(out)(_materialize(o) for o in out)
    return out.numpy() if hasattr(out, "numpy") else out


def _implementation(exercise: Exercise, impl: str) -> Callable:
    """``"numpy"``: the textbook tier; ``"kernel numpy"``: its tuned kernel; else a baseline."""
    if impl in exercise.tiers:
        return exercise.tier(impl)
    if impl.startswith("kernel "):
        return exercise.kernel(impl.split(" ", 1)[1])
    return resolve(exercise.baselines[impl])


def _prepare(exercise: Exercise, impl: str, case: Case) -> Callable[[], Any]:
    """A zero-argument callable running ``impl`` on ``case`` (inputs prepared beforehand)."""
    fn = _implementation(exercise, impl)
    if impl in ("tf", "kernel tf"):
        import tensorflow as tf

        from ..exercises.spec import as_tensors

        fn = tf.function(fn, jit_compile=exercise.tf_jit)
        args, kwargs = as_tensors(case, exercise.tf_static)
        return lambda: _materialize(fn(*args, **kwargs))

    def run():
        args, kwargs = case.fresh_args()
        return _materialize(fn(*args, **kwargs))
    return run


def _time(call: Callable[[], Any], repeat: int, warmup: bool = True) -> tuple[float, Any]:
    out = call() if warmup else None
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _time_loops(exercise: Exercise, case: Case, budget: float) -> tuple[float | None, bool, str, Any]:
    """Time the loops tier once; extrapolate from two smaller sizes when it would exceed budget."""
    n = _rows(case)
    small, smaller = max(2, n // 8), max(1, n // 16)
    if n >= 64:
        t1, _ = _time(_prepare(exercise, "loops", shrink(case, smaller)), 1, warmup=False)
        t2, _ = _time(_prepare(exercise, "loops", shrink(case, small)), 1, warmup=False)
        power = math.log(max(t2, 1e-9) / max(t1, 1e-9)) / math.log(small / smaller)
        power = min(max(power, 1.0), 3.0)
        estimate = t2 * (n / small) ** power
        if estimate > budget:
            note = f"extrapolated from {small} rows (time ~ rows^{power:.1f})"
            return estimate, True, note, None
    seconds, out = _time(_prepare(exercise, "loops", case), 1, warmup=False)
    return seconds, False, "1 run", out


# -- the table ----------------------------------------------------------------------------------
def run(only: list[str] | None = None, repeat: int = 5, quick: bool = False,
        loop_budget: float = 60.0, out=sys.stdout) -> list[Row]:
    """Time everything and print the table; returns the rows."""
    rows: list[Row] = []
    exercises = [e for e in all_exercises() if e.benchmarks is not None
                 and (not only or e.name in only)]
    if only:
        unknown = set(only) - {e.name for e in exercises}
        if unknown:
            raise SystemExit(f"no benchmark for: {', '.join(sorted(unknown))}")
    for ex in exercises:
        for case in ex.benchmarks():
            if quick:
                case = shrink(case, QUICK_ROWS)
                case = Case(f"{case.name} (quick: first {QUICK_ROWS} rows)", case.args, case.kwargs)
            reference = None
            block: list[tuple[Row, Any]] = []
            kernels = [f"kernel {t}" for t in ex.kernels]
            for impl in list(ex.tiers) + kernels + list(ex.baselines):
                kind = ("tier" if impl in ex.tiers else "kernel" if impl in kernels
                        else "baseline")
                try:
                    if impl == "loops":
                        seconds, est, note, output = _time_loops(ex, case, loop_budget)
                    else:
                        seconds, output = _time(_prepare(ex, impl, case), repeat)
                        est, note = False, ""
                except Exception as err:  # one failing implementation must not hide the rest
                    block.append((Row(ex.name, case.name, impl, kind, None, note=f"failed: {err}"[:80]), None))
                    continue
                if impl == ex.reference_tier:
                    reference = output
                block.append((Row(ex.name, case.name, impl, kind, seconds, est, note), output))
            for r, output in block:  # the 'agrees' column, against the reference tier's output
                if output is not None and reference is not None:
                    r.agrees = ex.compare(output, reference) is None
            rows.extend(r for r, _ in block)
    print(format_table(rows), file=out)
    return rows


def _fmt_time(seconds: float | None, estimated: bool) -> str:
    if seconds is None:
        return "-"
    mark = "~" if estimated else ""
    if seconds >= 1:
        return f"{mark}{seconds:.2f} s"
    return f"{mark}{seconds * 1e3:.2f} ms"


def format_table(rows: list[Row]) -> str:
    header = ("operation", "size", "implementation", "median", "vs loops", "vs best industry",
              "agrees", "note")
    lines = []
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.exercise, r.size), []).append(r)
    for (_, _), group in groups.items():
        loops = next((r.seconds for r in group if r.impl == "loops" and r.seconds), None)
        base = [r.seconds for r in group if r.kind == "baseline" and r.seconds]
        best = min(base) if base else None
        for r in group:
            speed = f"{loops / r.seconds:.1f}x" if loops and r.seconds else "-"
            ratio = f"{r.seconds / best:.2f}" if best and r.seconds else "-"
            agrees = {True: "yes", False: "NO", None: "-"}[r.agrees]
            name = f"[{r.impl}]" if r.kind == "baseline" else r.impl
            lines.append((r.exercise, r.size, name, _fmt_time(r.seconds, r.estimated), speed, ratio,
                          agrees, r.note))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)] if lines else [len(h) for h in header]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [fmt(header), fmt(["-" * w for w in widths])]
    prev = None
    for line in lines:
        if prev is not None and line[:2] != prev:
            out.append("")
        out.append(fmt(line))
        prev = line[:2]
    out.append("")
    out.append("vs loops: loops time / this time. vs best industry: this time / fastest [baseline] "
               "time (< 1 is faster). ~: extrapolated. [name]: industry baseline.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated exercise names, or coco for the COCO "
                        "evaluation table (default: everything)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per implementation (median)")
    parser.add_argument("--quick", action="store_true", help=f"shrink every case to {QUICK_ROWS} rows")
    parser.add_argument("--loop-budget", type=float, default=60.0,
                        help="seconds above which the loops tier is extrapolated, not run")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    registry_only = [n for n in only if n != "coco"] if only else None
    if only is None or registry_only:
        run(registry_only, repeat=args.repeat, quick=args.quick, loop_budget=args.loop_budget)
    if only is None or "coco" in only:
        # COCO evaluation is a whole-data-set benchmark, not one exercise: its own table
        from . import coco

        print("\nCOCO evaluation (python -m workshop.bench.coco; --only coco):")
        print(coco.format_rows(coco.run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
