"""Running the course's notebooks headless, and the course report.

``python -m workshop course-report [--learner] [NOTEBOOK ...]`` executes every solution notebook
(or the learner versions) top to bottom, as a learner's kernel would, and prints a table of each
notebook's wall time and the kernel's peak memory against the budgets (3 minutes and 2 GB per
notebook, 15 minutes for the course). The tests execute notebooks through :func:`run_notebook`.
Each kernel gets its own temporary folder (``TMPDIR``), removed afterwards; what a notebook left
in it after its kernel stopped is reported (a notebook cleans up after itself). The rendered
course (:mod:`workshop.tools.render`) runs its notebooks through :func:`run_notebook` too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
BUDGET_SECONDS = 180
BUDGET_MB = 2048
COURSE_BUDGET_SECONDS = 15 * 60

_PEAK_MEMORY_CELL = (
    "import resource as _r, sys as _s\n"
    "print('__peak_kb__', _r.getrusage(_r.RUSAGE_SELF).ru_maxrss // (1024 if _s.platform == 'darwin' else 1))"
)


@dataclass
class NotebookRun:
    path: Path
    seconds: float
    peak_mb: float | None
    error: str | None = None                  # the first failing cell, or None
    outputs: list[str] = field(default_factory=list)   # text of every code cell's output
    leftovers: list[str] = field(default_factory=list)  # left in the kernel's TMPDIR after it stopped
    failed_cell: int | None = None            # index (in the notebook's cells) of the failing cell
    notebook: object = field(default=None, repr=False)  # the executed notebook, with its outputs

    @property
    def ok(self) -> bool:
        return self.error is None


def _text(outputs) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            parts.append(data.get("text/plain", "") + data.get("text/html", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(parts)


def run_notebook(path, timeout: int = 600, env: dict | None = None,
                 scratch_cwd: bool = False) -> NotebookRun:
    """Execute the notebook at ``path`` in a fresh ``python3`` kernel (working directory: its
    folder, or with ``scratch_cwd`` its own temporary folder) and return the time, the kernel's
    peak memory, the outputs, the executed notebook and what the notebook left in its own
    temporary folder (``TMPDIR``, removed here) once the kernel stopped; never raises on a
    failing cell (the first error is reported in ``.error``, its index in ``.failed_cell``).
    The file itself is only read."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_PEAK_MEMORY_CELL))
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    scratch = Path(tempfile.mkdtemp(prefix="workshop-notebook-"))
    kernel_env = {**os.environ, "TMPDIR": str(scratch)}
    cwd = scratch if scratch_cwd else path.parent
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    started: list[int] = []
    client.on_cell_start = lambda cell, cell_index: started.append(cell_index)
    error = None
    start = time.perf_counter()
    try:
        client.execute(env=kernel_env)   # the kernel has stopped when this returns
    except CellTimeoutError as err:
        error = f"a cell ran longer than {timeout} s: {str(err).splitlines()[0]}"
    except CellExecutionError as err:
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        error = "\n".join(lines[-12:])
    except Exception as err:  # kernel died, could not start, ...
        error = f"{type(err).__name__}: {err}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        leftovers = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*"))
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - start
    outputs = [_text(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]
    peak = None
    for line in outputs[-1].splitlines():
        if line.startswith("__peak_kb__"):
            peak = int(line.split()[1]) / 1024
    failed = started[-1] if error and started and started[-1] < len(nb.cells) - 1 else None
    nb.cells.pop()   # the peak-memory cell
    return NotebookRun(path, seconds, peak, error, outputs[:-1], leftovers, failed, nb)


def course_notebooks(folder: Path = SOLUTIONS) -> list[Path]:
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workshop course-report", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebook files (default: every course notebook)")
    ap.add_argument("--learner", action="store_true", help="run notebooks/ instead of solutions/")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or course_notebooks(NOTEBOOKS if args.learner else SOLUTIONS)
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 2
    print(f"{'notebook':<34}{'time':>9}{'peak memory':>14}  result")
    total, failed = 0.0, 0
    for p in paths:
        run = run_notebook(p, args.timeout)
        total += run.seconds
        over = []
        if run.seconds > BUDGET_SECONDS:
            over.append(f"over {BUDGET_SECONDS} s")
        if run.peak_mb is not None and run.peak_mb > BUDGET_MB:
            over.append(f"over {BUDGET_MB} MB")
        if run.leftovers:
            over.append(f"left {len(run.leftovers)} temporary files")
        result = "ok" if run.ok else "FAILED"
        failed += not run.ok
        mem = f"{run.peak_mb:,.0f} MB" if run.peak_mb is not None else "-"
        print(f"{p.name:<34}{run.seconds:>8.1f}s{mem:>14}  {result}{' (' + ', '.join(over) + ')' if over else ''}",
              flush=True)
        if run.error:
            print("    " + run.error.replace("\n", "\n    "))
    flag = "" if total <= COURSE_BUDGET_SECONDS else f" (over the {COURSE_BUDGET_SECONDS // 60}-minute budget)"
    print(f"{'course':<34}{total:>8.1f}s{'':>14}  {len(paths) - failed}/{len(paths)} ran{flag}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
