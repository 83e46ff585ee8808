"""``python -m workshop grade SUBMISSIONS... --out results/``: grade a class without trusting it.

For every submitted notebook:

1. its solution notebook (same file name, under ``--solutions``, default ``<course>/solutions``)
   gives the tests and their points (the instructor's source of truth, never the submission);
2. for each test ``test_<exercise>_<tier>``, the submission's solution cell ``<exercise>_<tier>``
   is found by ``grade_id`` (anywhere in the notebook; its test cells are never run);
3. the cell is checked statically (:func:`static_violations`): importing or reaching for
   ``workshop.reference``/``workshop.exercises``, dynamic imports, or patching the checker or
   the import system score 0 with a message saying why;
4. it runs in a sandboxed child process (:mod:`workshop.grading.runner`: import blocker, memory,
   CPU and wall-clock limits, one process per test, so a crash or a hang costs that test only);
5. the outputs come back as plain arrays and are compared here with the registry's
   ``compare`` (dtype conversion, shape checks, the float32-friendly rtol/atol), on every
   public and hidden case (:func:`workshop.grading.check.grading_cases`); a test earns its
   points when every case passes.

Writes ``grades.csv`` (one row per submission, one column per test), one JSON record per test
under ``records/<student>/<notebook>/`` and per-learner feedback (HTML and Markdown, no hidden
inputs or test code) under ``feedback/<student>/``. Exits 1 if any submission could not be
graded (e.g. a notebook that is not valid JSON), 0 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import notebook as nbk
from .runner import REFERENCE_PREFIXES, Limits, RunResult, run_program

COURSE_ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_MODULES = REFERENCE_PREFIXES + ("workshop.bench",)
FORBIDDEN_STRINGS = ("workshop.reference", "workshop.exercises", "workshop/reference",
                     "workshop/exercises")
IMPORT_SYSTEM = {("sys", "modules"), ("sys", "meta_path"), ("sys", "path_hooks"),
                 ("sys", "path_importer_cache"), ("sys", "settrace"), ("sys", "setprofile"),
                 ("sys", "_getframe"), ("gc", "get_objects"), ("gc", "get_referrers"),
                 ("builtins", "__import__")}


# == static checks ===========================================================================
def _forbidden(module: str) -> bool:
    return module.startswith(FORBIDDEN_MODULES)


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def forbidden_bindings(statements: list[str]) -> dict[str, str]:
    """Names that import statements bind to a forbidden module: ``{"iou_numpy":
    "workshop.reference.boxes"}``."""
    bound = {}
    for stmt in statements:
        try:
            node = ast.parse(stmt).body[0]
        except (SyntaxError, IndexError):
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if _forbidden(a.name):
                    bound[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _forbidden(node.module) or _forbidden(full):
                    bound[a.asname or a.name] = full
    return bound


def static_violations(src: str, outside: dict[str, str] | None = None) -> list[str]:
    """Why this cell may not earn points (empty: nothing found). ``outside``: names bound to
    forbidden modules by import statements in other cells."""
    try:
        tree = ast.parse(nbk._strip_magics(src))
    except SyntaxError:
        return []  # it will fail on its own, with Python's message
    found: list[str] = []
    workshop_names = {"workshop"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("workshop"):
                    workshop_names.add(a.asname or a.name.split(".")[0])
                if _forbidden(a.name):
                    found.append(f"imports {a.name} (line {node.lineno}), the reference "
                                 "implementations")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if node.module.startswith("workshop"):
                    workshop_names.add(a.asname or a.name)
                if _forbidden(node.module) or _forbidden(full):
                    found.append(f"imports {full} (line {node.lineno}), the reference "
                                 "implementations")
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(s in node.value for s in FORBIDDEN_STRINGS):
                found.append(f"names the reference implementations ({node.value[:60]!r}, "
                             f"line {line})")
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name):
                pair = (node.value.id, node.attr)
                if node.value.id in workshop_names and node.attr in (
                        "reference", "exercises", "bench"):
                    found.append(f"reaches for workshop.{node.attr} (line {line})")
                if pair in IMPORT_SYSTEM:
                    found.append(f"tampers with the import system or the interpreter "
                                 f"({'.'.join(pair)}, line {line})")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if outside and node.id in outside:
                found.append(f"uses {node.id} (line {line}), imported from "
                             f"{outside[node.id]} in another cell: the reference implementations")
            if node.id in ("__import__", "__builtins__"):
                found.append(f"uses {node.id} (line {line})")
        elif isinstance(node, ast.Call):
            fname = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", "")
            if fname in ("import_module", "__import__", "reload") and not (
                    node.args and isinstance(node.args[0], ast.Constant)):
                found.append(f"imports a module by a computed name (line {line})")
            if fname in ("setattr", "delattr") and node.args and _root(node.args[0]) in (
                    workshop_names | {"sys", "builtins"}):
                found.append(f"patches {ast.unparse(node.args[0])} with {fname} (line {line})")
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, (ast.Attribute, ast.Subscript)) and _root(sub) in (
                        workshop_names | {"sys", "builtins", "np", "numpy"}):
                    found.append(f"patches {ast.unparse(sub)} (line {line}): the checker, the "
                                 "interpreter or numpy")
                    break
    return list(dict.fromkeys(found))


# == records =================================================================================
@dataclass
class TestRecord:
    """One test of one submission (written as one JSON record)."""

    student: str
    notebook: str
    grade_id: str
    exercise: str
    tier: str
    points: float
    max_points: float
    status: str          # passed | failed | not_implemented | missing | violation | timeout |
                         # crashed | error | skipped
    message: str = ""    # learner-facing: why no points (besides the verdict)
    verdict: dict = field(default_factory=dict)
    diagnoses: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stdout: str = ""     # instructor-only (may contain what the learner printed)

    def learner_view(self) -> dict:
        d = asdict(self)
        d.pop("stdout")
        return d


@dataclass
class SubmissionResult:
    student: str
    notebook: str
    path: str
    tests: list[TestRecord] = field(default_factory=list)
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_total(self) -> float:
        return sum(t.max_points for t in self.tests)


# == the expected outputs, computed once per exercise ========================================
class Expected:
    """Grading cases and their expected outputs (reference tier, in this process), cached.
    ``public_only``: the self-check's public cases instead (``python -m workshop check``)."""

    def __init__(self, public_only: bool = False):
        self.public_only = public_only
        self._cache: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        with self._lock:
            if name not in self._cache:
                from ..exercises import get
                from .check import grading_cases

                exercise = get(name)
                cases = (exercise.cases(public_only=True) if self.public_only
                         else grading_cases(exercise))
                self._cache[name] = (exercise, cases, [exercise.expected(c) for c in cases])
            return self._cache[name]


def _verdict_from_run(exercise, cases, expected, run: RunResult, tier: str):
    from .check import NOT_IMPLEMENTED, CaseResult, Verdict, judge

    if run.status != "ok":
        return Verdict(exercise.name, tier, [], status="error", note=run.message)
    if any(c.status == "not_implemented" for c in run.cases):
        return Verdict(exercise.name, tier, [], status=NOT_IMPLEMENTED)
    results = []
    for case, exp, got in zip(cases, expected, run.cases):
        if got.status == "ok":
            try:
                results.append(judge(exercise, case, got.output, expected=exp))
            except Exception as err:  # a comparison that cannot even run is a failed case  # noqa: BLE001
                results.append(CaseResult(case.name, False, f"could not compare: {err}",
                                          public=case.public))
        else:
            results.append(CaseResult(case.name, False, got.error or got.status,
                                      inputs=case.describe() if case.public else "",
                                      public=case.public))
    return Verdict(exercise.name, tier, results)


# == grading one submission =================================================================
def grade_notebook(path: Path, tests: list[nbk.GradedTest], student: str, expected: Expected,
                   limits: Limits, budget: float = 900.0) -> SubmissionResult:
    start = time.monotonic()
    sub = SubmissionResult(student, path.name, str(path))
    try:
        nb = nbk.load(path)
    except nbk.NotebookError as err:
        sub.error = str(err)
        return sub
    all_imports = []
    for cell in nbk.code_cells(nb):
        if nbk.is_test_cell(cell):
            continue
        tree = nbk._parse(nbk.source(cell))
        for node in (tree.body if tree else []):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                all_imports.append(ast.unparse(node))
    outside = forbidden_bindings(all_imports)
    for test in tests:
        rec = TestRecord(student, path.name, test.grade_id, test.exercise, test.tier, 0.0,
                         test.points, "error")
        sub.tests.append(rec)
        t0 = time.monotonic()
        left = budget - (t0 - start)
        if left <= 1:
            rec.status = "skipped"
            rec.message = f"not graded: the submission's time budget ({budget:.0f} s) ran out"
            continue
        try:
            exercise, cases, exp = expected.get(test.exercise)
        except KeyError as err:
            rec.message = f"unknown exercise: {err}"
            sub.warnings.append(rec.message)
            continue
        program = nbk.program_for(nb, test.solution_id, test.function)
        if program is None:
            rec.status = "missing"
            rec.message = (f"no solution cell with grade_id {test.solution_id!r} in the notebook "
                           "(was it deleted, or its metadata edited?)")
            continue
        program.imports = [s for s in program.imports if not forbidden_bindings([s])]
        problems = []
        for label, src in program.cells:
            problems += [p if label == test.solution_id else f"(in cell {label!r}, which it "
                         f"uses) {p}" for p in static_violations(src, outside)]
        if problems:
            rec.status = "violation"
            rec.message = ("No points for this exercise: grading runs your own code only, and "
                           "your solution " + "; ".join(problems[:3]) + ".")
            continue
        test_limits = Limits(**{**limits.__dict__, "wall": min(limits.wall, left)})
        run = run_program(program, cases, test.tier, n_outputs=len(exercise.outputs),
                          tf_static=exercise.tf_static, limits=test_limits)
        rec.stdout, rec.seconds = run.stdout, round(run.seconds, 3)
        if run.reached_reference or run.tampered:
            rec.status = "violation"
            why = [f"tried to import {b}" for b in dict.fromkeys(run.reached_reference)]
            rec.message = ("No points for this exercise: grading runs your own code only, and "
                           "your solution " + "; ".join(why + run.tampered) + ".")
            continue
        verdict = _verdict_from_run(exercise, cases, exp, run, test.tier)
        rec.verdict = verdict.to_dict()
        rec.verdict["report"] = verdict.report()
        rec.diagnoses = verdict.diagnoses
        if verdict.passed:
            rec.status, rec.points = "passed", test.points
        elif verdict.status == "not implemented yet":
            rec.status = "not_implemented"
        elif run.status in ("timeout", "crashed"):
            rec.status, rec.message = run.status, run.message
        elif run.status != "ok":
            rec.status, rec.message = "error", run.message
        else:
            rec.status = "failed"
        if run.setup_errors and not verdict.passed and run.status != "no_function":
            rec.message = (rec.message + " " if rec.message else "") + \
                "While setting up: " + "; ".join(run.setup_errors[:2])
    sub.seconds = round(time.monotonic() - start, 3)
    return sub


# == many submissions ========================================================================
def find_notebooks(paths: list[str]) -> list[tuple[Path, str]]:
    """(notebook, student) for every ``.ipynb`` given or found under a given directory.
    The student is the folder after ``submitted/`` (nbgrader's layout), else the first folder
    under the directory given, else the notebook's stem."""
    found = []
    for p in map(Path, paths):
        files = [p] if p.is_file() or p.suffix == ".ipynb" else sorted(
            f for f in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in f.parts)
        for f in files:
            parts = f.resolve().parts
            if "submitted" in parts[:-1]:
                student = parts[parts.index("submitted") + 1]
            elif f != p:
                rel = f.relative_to(p).parts
                student = rel[0] if len(rel) > 1 else p.resolve().name
            else:
                student = f.stem
            found.append((f, student))
    # the same student and notebook twice (files given one by one): name them by folder
    keys = [(s, f.name) for f, s in found]
    return [(f, f"{f.resolve().parent.name}-{s}" if keys.count((s, f.name)) > 1 else s)
            for f, s in found]


def solution_index(solutions: Path) -> dict[str, Path]:
    if solutions.is_file():
        return {"*": solutions}
    return {f.name: f for f in sorted(solutions.rglob("*.ipynb"))
            if ".ipynb_checkpoints" not in f.parts}


def grade_all(submissions: list[str], out: Path, solutions: Path | None = None, jobs: int = 1,
              limits: Limits | None = None, budget: float = 900.0,
              log=print) -> list[SubmissionResult]:
    """Grade every submission, write ``out/grades.csv``, records and feedback; return results."""
    from .feedback import write_feedback

    limits = limits or Limits()
    index = solution_index(Path(solutions or COURSE_ROOT / "solutions"))
    expected = Expected()
    tests_cache: dict[Path, tuple] = {}

    def one(item):
        path, student = item
        sol = index.get("*") or index.get(path.name)
        if sol is None:
            return SubmissionResult(student, path.name, str(path), error=(
                f"no solution notebook named {path.name} under the solutions folder: cannot "
                "know its tests and points (was the file renamed?)"))
        if sol not in tests_cache:
            tests_cache[sol] = nbk.graded_tests(nbk.load(sol))
        tests, warnings = tests_cache[sol]
        try:
            res = grade_notebook(path, tests, student, expected, limits, budget)
        except Exception as err:  # a grader bug must not lose the other submissions  # noqa: BLE001
            res = SubmissionResult(student, path.name, str(path),
                                   error=f"internal grader error: {type(err).__name__}: {err}")
        res.warnings += warnings
        if log:
            state = f"ERROR {res.error}" if res.error else f"{res.total:g}/{res.max_total:g}"
            log(f"{student}/{path.name}: {state} ({res.seconds:.1f} s)")
        return res

    items = find_notebooks(submissions)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, items))
    write_results(results, out)
    for res in results:
        write_feedback(res, out / "feedback")
    return results


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


def write_results(results: list[SubmissionResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    test_ids = list(dict.fromkeys(t.grade_id for r in results for t in r.tests))
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "total", "max", "status", *test_ids, "error"])
        for r in results:
            pts = {t.grade_id: t.points for t in r.tests}
            w.writerow([r.student, r.notebook, f"{r.total:g}", f"{r.max_total:g}",
                        "error" if r.error else "graded",
                        *[f"{pts[t]:g}" if t in pts else "" for t in test_ids], r.error])
    for r in results:
        folder = out / "records" / _safe(r.student) / _safe(Path(r.notebook).stem)
        folder.mkdir(parents=True, exist_ok=True)
        for t in r.tests:
            (folder / f"{_safe(t.grade_id)}.json").write_text(json.dumps(asdict(t), indent=1))
        if r.error:
            (folder / "_error.json").write_text(json.dumps(
                {"student": r.student, "notebook": r.notebook, "error": r.error}, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workshop grade", description=__doc__.split("\n")[0])
    ap.add_argument("submissions", nargs="+", help="notebooks, or folders searched for *.ipynb")
    ap.add_argument("--out", default="results", help="output folder (default results/)")
    ap.add_argument("--solutions", default=None,
                    help="solution notebooks (folder or one file); default <course>/solutions")
    ap.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded in parallel")
    ap.add_argument("--timeout", type=float, default=60.0, help="wall-clock seconds per test")
    ap.add_argument("--cpu", type=int, default=None, help="CPU seconds per test")
    ap.add_argument("--memory", type=int, default=2048, help="MB of address space per test")
    ap.add_argument("--submission-timeout", type=float, default=900.0,
                    help="wall-clock seconds for all tests of one submission")
    ap.add_argument("--quiet", "-q", action="store_true")
    a = ap.parse_args(argv)
    limits = Limits(wall=a.timeout, cpu=a.cpu or int(a.timeout) + 5, memory_mb=a.memory)
    t0 = time.monotonic()
    results = grade_all(a.submissions, Path(a.out), Path(a.solutions) if a.solutions else None,
                        a.jobs, limits, a.submission_timeout, log=None if a.quiet else print)
    bad = [r for r in results if r.error]
    if not a.quiet:
        print(f"graded {len(results) - len(bad)}/{len(results)} submissions in "
              f"{time.monotonic() - t0:.1f} s; see {Path(a.out) / 'grades.csv'}")
    for r in bad:
        print(f"could not grade {r.path}: {r.error}", file=sys.stderr)
    if not results:
        print("no notebooks found", file=sys.stderr)
        return 1
    return 1 if bad else 0


def check_main(argv: list[str] | None = None) -> int:
    """``python -m workshop check NOTEBOOK...``: the public self-checks of every solution cell,
    run in the sandbox (as the grader would run them), without needing the solutions."""
    ap = argparse.ArgumentParser(prog="python -m workshop check", description=check_main.__doc__)
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args(argv)
    expected, limits, bad = Expected(public_only=True), Limits(wall=a.timeout), 0
    for path, student in find_notebooks(a.notebooks):
        try:
            nb = nbk.load(path)
        except nbk.NotebookError as err:
            print(f"{path}: {err}")
            bad += 1
            continue
        tests, _ = nbk.graded_tests(nb)
        if not tests:  # test cells deleted: check every solution cell that names a tier
            for cell in nbk.code_cells(nb):
                gid = str(nbk.nbgrader_meta(cell).get("grade_id", ""))
                if nbk.is_solution_cell(cell) and nbk.split_id(gid):
                    ex, tier = nbk.split_id(gid)
                    tests.append(nbk.GradedTest(nbk.test_id(ex, tier), ex, tier, 0.0))
        res = grade_notebook(path, tests, student, expected, limits)
        print(f"== {path}")
        for t in res.tests:
            print(t.verdict.get("report") or f"{t.exercise} [{t.tier}]: {t.message}")
    return 1 if bad else 0


class _CallableModule(types.ModuleType):
    """``workshop.grading.grade`` is both this module and the notebooks' ``grade()`` function:
    importing the submodule rebinds the package attribute ``grade`` to the module, so the
    module forwards calls to :func:`workshop.grading.check.grade` (``from workshop.grading
    import grade; grade("iou", iou_numpy, tier="numpy")`` works either way)."""

    def __call__(self, name, fn, tier=None):
        from .check import grade as grade_fn

        return grade_fn(name, fn, tier=tier)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    sys.exit(main())
