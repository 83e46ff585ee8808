"""The course's notebook convention, and reading notebooks without trusting them.

Convention (every course notebook in ``solutions/`` follows it; ``notebooks/`` is generated)
-------------------------------------------------------------------------------------------
* **Solution cell** -- a code cell with nbgrader metadata::

      {"solution": true, "grade": false, "locked": false,
       "grade_id": "<exercise>_<tier>", "schema_version": 3}

  defining a function named ``<exercise>_<tier>`` (e.g. ``iou_numpy``; ``<exercise>`` is the
  registry name, ``<tier>`` one of ``loops``, ``numpy``, ``tf``), with the body between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``. ``make release`` (nbgrader's ClearSolutions)
  turns the body into ``raise NotImplementedError()`` for learners.
* **Test cell** -- right after it, a locked graded code cell::

      {"grade": true, "solution": false, "locked": true,
       "grade_id": "test_<exercise>_<tier>", "points": P, "schema_version": 3}

  whose code is ``grade("<exercise>", <exercise>_<tier>, tier="<tier>")``. In a learner's
  kernel it runs the public checks and prints a verdict (never raises; under ``nbgrader
  validate`` it raises ``AssertionError`` on a failure). Grades come only from the sandboxed
  grader: ``workshop grade``, or nbgrader's autograde through
  :mod:`workshop.grading.autograde` (public and hidden cases, hidden inputs never revealed).
* Every other cell (imports, helper calls, plots) may import ``workshop.*`` freely.

How ``workshop grade`` uses the convention
------------------------------------------
* The tests and their points come from the **solution** notebook's test cells (``points``),
  never from the submission. Cells are found by ``grade_id``, not position; a submission's
  test cells are never run, so deleting or editing them changes nothing.
* For a test ``test_<exercise>_<tier>`` the grader runs, in the sandbox, the
  submission's solution cell ``<exercise>_<tier>``, plus: every top-level import statement of
  the notebook's other code cells (each on its own; failures ignored), and the other solution
  cells / top-level ``def``/``class`` statements that define a name the cell uses (so
  ``nms_numpy`` may call the learner's own ``iou_numpy``). It then calls
  ``<exercise>_<tier>`` on every case. Nothing else of the notebook runs.
* Solution cells must not import ``workshop.reference`` / ``workshop.exercises`` (or reach for
  them by any other route) nor patch ``workshop.grading``: such a cell scores 0.
  ``check(...)``/``grade(...)`` calls inside a solution cell are harmless (no-ops while grading).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIERS = ("loops", "numpy", "tf")
TEST_PREFIX = "test_"
MAX_NOTEBOOK_MB = 50


class NotebookError(ValueError):
    """The file is not a notebook we can read (not JSON, not nbformat 4, ...)."""


# -- reading -------------------------------------------------------------------------------
def load(path: str | Path) -> dict:
    """Read a notebook as plain JSON (a dict), tolerant of a missing/odd nbformat minor version.

    Raises :class:`NotebookError` with a one-line reason for anything unreadable.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read((MAX_NOTEBOOK_MB << 20) + 1)
    except OSError as err:
        raise NotebookError(f"cannot read {path}: {err.strerror or err}") from None
    if len(raw) > MAX_NOTEBOOK_MB << 20:
        raise NotebookError(f"{path.name} is larger than {MAX_NOTEBOOK_MB} MB; clear its outputs "
                            "(Edit > Clear Outputs of All Cells) and submit it again")
    try:
        nb = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as err:
        raise NotebookError(f"{path.name} is not valid JSON (line {err.lineno}, column "
                            f"{err.colno}: {err.msg}); was it saved by Jupyter?") from None
    except RecursionError:
        raise NotebookError(f"{path.name} is nested too deeply to be a notebook") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path.name} is JSON but not a notebook (no list of cells)")
    version = nb.get("nbformat", 4)
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise NotebookError(f"{path.name}: its nbformat version {str(version)[:20]!r} is not a "
                            "number; re-save it with Jupyter") from None
    if version < 4:
        raise NotebookError(f"{path.name} uses nbformat {version}; re-save it with "
                            "a current Jupyter (nbformat 4)")
    return nb


def source(cell: dict) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(str(s) for s in src)
    return src if isinstance(src, str) else ""


def nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def code_cells(nb: dict) -> Iterator[dict]:
    for cell in nb.get("cells", []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            yield cell


def is_solution_cell(cell: dict) -> bool:
    m = nbgrader_meta(cell)
    return bool(m.get("solution")) and not m.get("grade") and cell.get("cell_type") == "code"


def is_test_cell(cell: dict) -> bool:
    m = nbgrader_meta(cell)
    return bool(m.get("grade")) and not m.get("solution") and cell.get("cell_type") == "code"


def find_cell(nb: dict, grade_id: str, solution: bool = True) -> dict | None:
    """The code cell with nbgrader ``grade_id`` (a solution cell if ``solution``), anywhere in
    the notebook. The last one wins if a learner duplicated it (the one run last in Jupyter)."""
    found = None
    for cell in code_cells(nb):
        if nbgrader_meta(cell).get("grade_id") == grade_id and (
                is_solution_cell(cell) if solution else is_test_cell(cell)):
            found = cell
    return found


# -- grade ids -----------------------------------------------------------------------------
def split_id(grade_id: str) -> tuple[str, str] | None:
    """``"batched_nms_numpy"`` -> ``("batched_nms", "numpy")``; None if no tier suffix."""
    name, _, tier = grade_id.rpartition("_")
    if name and tier in TIERS:
        return name, tier
    return None


def solution_id(exercise: str, tier: str) -> str:
    return f"{exercise}_{tier}"


def test_id(exercise: str, tier: str) -> str:
    return f"{TEST_PREFIX}{exercise}_{tier}"


@dataclass(frozen=True)
class GradedTest:
    """One graded test of a solution notebook: what to check and what it is worth."""

    grade_id: str       # "test_iou_numpy"
    exercise: str       # "iou"
    tier: str           # "numpy"
    points: float

    @property
    def solution_id(self) -> str:
        return solution_id(self.exercise, self.tier)

    @property
    def function(self) -> str:
        return self.solution_id


def _from_grade_call(src: str) -> tuple[str, str] | None:
    """``grade("iou", iou_numpy, tier="numpy")`` -> ("iou", "numpy"), for test cells whose
    grade_id does not follow the convention."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                == "grade" and node.args and isinstance(node.args[0], ast.Constant)):
            tier = next((k.value.value for k in node.keywords if k.arg == "tier"
                         and isinstance(k.value, ast.Constant)), None)
            if tier is None and len(node.args) > 2 and isinstance(node.args[2], ast.Constant):
                tier = node.args[2].value
            if isinstance(node.args[0].value, str) and tier in TIERS:
                return node.args[0].value, tier
    return None


def graded_tests(nb: dict) -> tuple[list[GradedTest], list[str]]:
    """The graded tests of a (solution) notebook, in order, and warnings about test cells that
    follow no convention (those are left to nbgrader)."""
    tests, warnings, seen = [], [], set()
    for cell in code_cells(nb):
        if not is_test_cell(cell):
            continue
        meta = nbgrader_meta(cell)
        gid = str(meta.get("grade_id", ""))
        parsed = split_id(gid[len(TEST_PREFIX):]) if gid.startswith(TEST_PREFIX) else None
        parsed = parsed or _from_grade_call(source(cell))
        if parsed is None:
            warnings.append(f"test cell {gid!r} names no <exercise>_<tier>; not graded here")
            continue
        try:
            points = float(meta.get("points", 0) or 0)
        except (TypeError, ValueError):
            points = 0.0
        if gid in seen:
            warnings.append(f"test cell {gid!r} appears twice; the first one counts")
            continue
        seen.add(gid)
        tests.append(GradedTest(gid, parsed[0], parsed[1], points))
    return tests, warnings


# -- what to run for one solution cell ----------------------------------------------------
def _bound_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                # `x = ...` and `a, b = ...` define names; `np.x = ...` and `d[k] = ...` do not
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        names.add(n.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names.add((a.asname or a.name).split(".")[0])
    return names


def _used_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def parse(src: str) -> ast.Module | None:
    """The cell's syntax tree (magics blanked), or None when it is not Python we can read
    (a syntax error, or nesting deep enough to overflow the parser)."""
    try:
        return ast.parse(strip_magics(src))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _unparse(node: ast.AST) -> str | None:
    try:
        return ast.unparse(node)
    except (RecursionError, ValueError):
        return None


def strip_magics(src: str) -> str:
    """IPython magics and shell escapes are not Python: blank them out (keeps line numbers)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in src.splitlines())


@dataclass
class Program:
    """What the sandbox runs for one test: ``imports`` (each statement alone, failures
    ignored), then ``cells`` in order (``(label, source)``; the last one is the graded cell)."""

    imports: list[str]
    cells: list[tuple[str, str]]
    function: str

    def run_here(self, notebook_name: str, module_name: str = "__learner__") -> dict:
        """Run the program in this process, in a fresh namespace, and return that namespace:
        each import statement alone (failures ignored, as in the sandbox), then the cells in
        order (an exception propagates; tracebacks name ``notebook_name`` and the cell). No
        sandbox: for notebooks the caller trusts (a learner's own, in their own kernel)."""
        namespace: dict = {"__name__": module_name}
        for statement in self.imports:
            try:
                exec(compile(statement, f"<{notebook_name}: import>", "exec"), namespace)
            except Exception:  # an import this machine lacks: the sandbox ignores it too
                pass
        for label, src in self.cells:
            exec(compile(src, f"<{notebook_name}: {label}>", "exec"), namespace)
        return namespace


def program_for(nb: dict, grade_id: str, function: str) -> Program | None:
    """The code to run to obtain the submission's ``function`` from its solution cell
    ``grade_id``; None if there is no such solution cell."""
    target = find_cell(nb, grade_id, solution=True)
    if target is None:
        return None
    imports: list[str] = []
    candidates: list[tuple[str, str, set[str], ast.Module | None]] = []  # label, src, binds
    target_index = None
    for i, cell in enumerate(code_cells(nb)):
        if is_test_cell(cell):
            continue  # test cells never run while grading
        src = strip_magics(source(cell))
        tree = parse(src)
        if cell is target:
            target_index = len(candidates)
            candidates.append((grade_id, src, _bound_names(tree) if tree else set(), tree))
            continue
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                text = _unparse(node)
                if text:
                    imports.append(text)
        label = nbgrader_meta(cell).get("grade_id") or f"code cell {i + 1}"
        if is_solution_cell(cell):
            candidates.append((str(label), src, _bound_names(tree), tree))
        else:  # ungraded cell: only its definitions, never its other statements
            defs = [n for n in tree.body if isinstance(
                n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            mod = ast.Module(body=defs, type_ignores=[])
            text = _unparse(mod) if defs else None
            if text:
                candidates.append((str(label), text, _bound_names(mod), mod))
    # the cells defining a name the graded cell (transitively) uses
    needed = {target_index}
    frontier = [target_index]
    while frontier:
        idx = frontier.pop()
        tree = candidates[idx][3]
        used = _used_names(tree) if tree is not None else set()
        for j, (_, _, binds, _) in enumerate(candidates):
            if j not in needed and binds & used:
                needed.add(j)
                frontier.append(j)
    ordered = [j for j in range(len(candidates)) if j in needed and j != target_index]
    cells = [(candidates[j][0], candidates[j][1]) for j in ordered]
    cells.append((grade_id, candidates[target_index][1]))
    return Program(imports=list(dict.fromkeys(imports)), cells=cells, function=function)


# -- writing (tests and notebook authors) --------------------------------------------------
def solution_cell(exercise: str, tier: str, body: str, signature: str | None = None,
                  doc: str | None = None) -> Any:
    """A solution cell following the convention; ``body`` is the function body (indented);
    ``doc``, the docstring, stays above the solution region so learners keep it."""
    import nbformat

    name = solution_id(exercise, tier)
    head = f"def {name}{signature or '(*args, **kwargs)'}:"
    if doc:
        lines = doc.strip("\n").splitlines()
        head += '\n    """' + "\n".join(("    " + ln if ln.strip() and i else ln) for i, ln in enumerate(lines)) + '\n    """'

    src = f"{head}\n    ### BEGIN SOLUTION\n{body.rstrip()}\n    ### END SOLUTION"
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "locked": False,
                                 "grade_id": name, "schema_version": 3}
    return cell


def test_cell(exercise: str, tier: str, points: float) -> Any:
    """The graded test cell that follows a solution cell."""
    import nbformat

    cell = nbformat.v4.new_code_cell(
        f'grade("{exercise}", {solution_id(exercise, tier)}, tier="{tier}")')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "grade_id": test_id(exercise, tier), "points": points,
                                 "schema_version": 3}
    return cell


test_cell.__test__ = False  # not a pytest test
