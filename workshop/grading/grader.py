"""``python -m workshop grade SUBMISSIONS... --out results/``: grade a class without trusting it.

The pipeline, for every submitted notebook:

1. its solution notebook (same file name, under ``--solutions``, default ``<course>/solutions``)
   gives the tests and their points (the instructor's source of truth, never the submission);
2. for each test ``test_<exercise>_<tier>``, the submission's solution cell ``<exercise>_<tier>``
   is found by ``grade_id`` (anywhere in the notebook; its test cells are never run) with the
   cells it depends on (:func:`workshop.grading.notebook.program_for`);
3. the code is checked statically (:mod:`workshop.grading.static`): reaching for the answers or
   patching the checker scores 0 with a message saying why;
4. it runs in the operating-system sandbox (:mod:`workshop.grading.sandbox`, one sandboxed
   process per test: a crash, a hang or an attack costs that test only) on the public and hidden
   cases; hidden random cases come from a secret seed drawn for each run (``--seed`` to
   reproduce one; recorded in ``run.json`` for the instructor only);
5. the outputs come back through a capped, checked channel (:mod:`workshop.grading.runner`) and
   are compared here with the registry's ``compare``; a test earns its points when every case
   passes. With ``--track`` (:mod:`workshop.tracks`; default ``full``, every test counts), a
   test the track does not count (a stretch tier, an exercise outside it) is graded and
   reported but worth 0 of 0 points.

Writes (:mod:`workshop.grading.records`, atomically) ``grades.csv``, one JSON record per test
under ``records/<student>/<notebook>/``, ``run.json`` and per-learner feedback
(:mod:`workshop.grading.feedback`). ``--resume`` keeps what an interrupted run already graded.
Exits 1 if any submission could not be graded, 0 otherwise.

Length: the whole grading pipeline of one submission (expected outputs, verdicts, the
per-test and per-learner orchestration, the command line) in the order it runs.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import notebook as nbk
from .probe import check_sandbox
from .records import (
    SubmissionResult,
    TestRecord,
    read_run,
    read_submission,
    write_grades,
    write_run,
    write_submission,
)
from .runner import Limits, RunResult, run_program
from .sandbox import Sandbox, SandboxUnavailable
from .static import forbidden_bindings, static_violations
from .zygote import session_for

COURSE_ROOT = Path(__file__).resolve().parents[2]


def new_seed() -> int:
    """A secret seed for one grading run's hidden random cases."""
    return secrets.randbelow(2**63)


# == the expected outputs, computed once per exercise ========================================
class Expected:
    """Grading cases and their expected outputs (reference tier, in this process), cached.
    ``seed``: the hidden random cases' seed; ``public_only``: the self-check's public cases."""

    def __init__(self, seed: int | None = None, public_only: bool = False):
        if seed is None and not public_only:
            raise ValueError("grading needs a seed for its hidden cases (see new_seed())")
        self.seed, self.public_only = seed, public_only
        self._cache: dict[str, tuple] = {}
        self._wrong: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        with self._lock:
            if name not in self._cache:
                from ..exercises import get
                from .check import grading_cases

                exercise = get(name)
                cases = (exercise.cases(public_only=True) if self.public_only
                         else grading_cases(exercise, self.seed))
                self._cache[name] = (exercise, cases, [exercise.expected(c) for c in cases])
            return self._cache[name]

    def wrong_output(self, name: str):
        """``(mistake, i) -> output``: each declared mistake's output on case ``i``, computed
        once for the whole class (every learner's diagnosis needs the same ones)."""
        from ..exercises.diagnosis import run_wrong

        _, cases, _ = self.get(name)

        def wrong(mistake, i):
            key = (name, mistake.name, i)
            with self._lock:
                if key in self._wrong:
                    return self._wrong[key]
            value = run_wrong(mistake, cases[i])
            with self._lock:
                self._wrong[key] = value
            return value
        return wrong


def verdict_from_run(exercise, cases, expected, run: RunResult, tier: str, wrong_output=None):
    from .check import (
        NOT_IMPLEMENTED,
        CaseResult,
        Verdict,
        contract_case,
        diagnosed,
        judge,
    )
    from .contracts import answer_message, case_problem

    if run.status != "ok":
        return Verdict(exercise.name, tier, [], status="error", note=run.message)
    if any(c.status == "not_implemented" for c in run.cases):
        return Verdict(exercise.name, tier, [], status=NOT_IMPLEMENTED)
    results, received = [], []
    jit_case = contract_case(cases) if tier == "tf" else None
    kinds = [o.kind for o in exercise.outputs]
    for i, (case, exp, got) in enumerate(zip(cases, expected, run.cases)):
        problem = ""
        if got.status == "ok":
            tf_dtypes = exercise.tf_dtypes(case) if i == jit_case else None
            problem = case_problem(tier, got.described, got.changed, kinds, tf_dtypes)
        if problem:
            results.append(CaseResult(case.name, False, problem,
                                      inputs=case.describe() if case.public else "",
                                      public=case.public))
        elif got.status == "ok":
            try:
                results.append(judge(exercise, case, got.output, expected=exp))
                received.append(got.output)
                continue
            except Exception as err:  # a comparison that cannot even run is a failed case  # noqa: BLE001
                results.append(CaseResult(case.name, False, f"could not compare: {err}",
                                          public=case.public))
        else:
            results.append(CaseResult(case.name, False, got.error or got.status,
                                      inputs=case.describe() if case.public else "",
                                      public=case.public))
        received.append(None)
    verdict = diagnosed(exercise, tier, cases, expected, received, results, wrong_output)
    if run.answer_calls:
        verdict.contract.append(answer_message(run.answer_calls))
    return verdict


# == grading one submission =================================================================
def _notebook_imports(nb: dict) -> list[str]:
    found = []
    for cell in nbk.code_cells(nb):
        if nbk.is_test_cell(cell):
            continue
        tree = nbk.parse(nbk.source(cell))
        for node in (tree.body if tree else []):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                try:
                    found.append(ast.unparse(node))
                except (RecursionError, ValueError):
                    continue
    return found


def grade_test(nb: dict, test: nbk.GradedTest, rec: TestRecord, expected: Expected,
               limits: Limits, sandbox: Sandbox, outside: dict[str, str], session=None) -> None:
    """Grade one test of a notebook into ``rec``."""
    try:
        exercise, cases, exp = expected.get(test.exercise)
    except KeyError as err:
        rec.message = f"unknown exercise: {err}"
        return
    program = nbk.program_for(nb, test.solution_id, test.function)
    if program is None:
        rec.status = "missing"
        rec.message = (f"no solution cell with grade_id {test.solution_id!r} in the notebook "
                       "(was it deleted, or its metadata edited?)")
        return
    program.imports = [s for s in program.imports if not forbidden_bindings([s])]
    problems = []
    for label, src in program.cells:
        problems += [p if label == test.solution_id else f"(in cell {label!r}, which it "
                     f"uses) {p}" for p in static_violations(src, outside)]
    if problems:
        rec.status = "violation"
        rec.message = ("No points for this exercise: grading runs your own code only, and "
                       "your solution " + "; ".join(problems[:3]) + ".")
        return
    from .check import argument_names, contract_case, static_contract

    broken = static_contract(exercise, test.tier, [src for _, src in program.cells],
                             program.imports, test.function)
    if broken:
        rec.status = "contract"
        rec.message = "No points for this exercise: " + "; ".join(broken) + "."
        return
    contract = {"answer_calls": list(exercise.answer_calls_for(test.tier)),
                "arg_names": argument_names(exercise), "tf_jit": exercise.tf_jit,
                "contract_case": contract_case(cases) if test.tier == "tf" else None}
    run = run_program(program, cases, test.tier, n_outputs=len(exercise.outputs),
                      tf_static=exercise.tf_static, limits=limits, sandbox=sandbox,
                      session=session, contract=contract)
    rec.stdout, rec.seconds = run.stdout, round(run.seconds, 3)
    if run.reached_reference or run.tampered:
        rec.status = "violation"
        why = [f"tried to import {b}" for b in dict.fromkeys(run.reached_reference)]
        rec.message = ("No points for this exercise: grading runs your own code only, and "
                       "your solution " + "; ".join(why + run.tampered) + ".")
        return
    verdict = verdict_from_run(exercise, cases, exp, run, test.tier,
                               wrong_output=expected.wrong_output(test.exercise))
    rec.verdict = verdict.to_dict()
    rec.verdict["report"] = verdict.report()
    rec.diagnoses = verdict.diagnoses
    if verdict.passed:
        rec.status, rec.points = "passed", rec.max_points
    elif verdict.contract:
        rec.status = "contract"
        rec.message = "No points for this exercise: " + "; ".join(verdict.contract) + "."
    elif verdict.status == "not implemented yet":
        rec.status = "not_implemented"
    elif run.status in ("timeout", "crashed"):
        rec.status, rec.message = run.status, run.message
    elif run.status != "ok":
        rec.status, rec.message = "error", run.message
    else:
        rec.status = "failed"
    if run.status == "no_function" and run.setup_errors:
        rec.message = (rec.message + " " if rec.message else "") + \
            "While running the cells it needs: " + "; ".join(run.setup_errors[:2])


def grade_notebook(path: Path, tests: list[nbk.GradedTest], student: str, expected: Expected,
                   limits: Limits, budget: float = 900.0, sandbox: Sandbox | None = None,
                   session=None, parallel: int = 1, track=None) -> SubmissionResult:
    """Every test of one submitted notebook; never raises for anything in the notebook.
    ``session``: the learner's warm sandboxed interpreter (:func:`~.zygote.session_for`);
    ``parallel``: how many of its tests run at once (each in a process of its own);
    ``track``: a :class:`workshop.tracks.Track`, whose uncounted tests are worth 0 of 0."""
    sandbox = sandbox or Sandbox("none")
    start = time.monotonic()
    sub = SubmissionResult(student, path.name, str(path), track=track.name if track else "")
    try:
        sub.digest = hashlib.sha256(path.read_bytes()).hexdigest()
        nb = nbk.load(path)
    except (OSError, nbk.NotebookError) as err:
        sub.error = str(err)
        return sub
    outside = forbidden_bindings(_notebook_imports(nb))

    def one(test: nbk.GradedTest, rec: TestRecord) -> None:
        left = budget - (time.monotonic() - start)
        if left <= 1:
            rec.status = "skipped"
            rec.message = f"not graded: the submission's time budget ({budget:.0f} s) ran out"
            return
        test_limits = Limits(**{**limits.__dict__, "wall": min(limits.wall, left)})
        try:
            grade_test(nb, test, rec, expected, test_limits, sandbox, outside, session)
        except (RecursionError, MemoryError) as err:
            rec.status, rec.points = "error", 0.0
            rec.message = (f"this solution cell could not be read ({type(err).__name__}: an "
                           "expression nested too deeply?)")

    for test in tests:
        optional = track.optional_reason(test.exercise, test.tier) if track else ""
        sub.tests.append(TestRecord(student, path.name, test.grade_id, test.exercise, test.tier,
                                    0.0, 0.0 if optional else test.points, "error",
                                    sandbox=sandbox.mode, optional=optional))
    if parallel > 1 and len(tests) > 1:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for done in [pool.submit(one, t, r) for t, r in zip(tests, sub.tests)]:
                done.result()
    else:
        for test, rec in zip(tests, sub.tests):
            one(test, rec)
    sub.seconds = round(time.monotonic() - start, 3)
    return sub


def tests_at_once(jobs: int) -> int:
    """How many tests of one learner run at once when ``jobs`` learners are graded at once: the
    cores the other learners leave free."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


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


def _already_graded(out: Path, path: Path, student: str, seed: int,
                    track: str) -> SubmissionResult | None:
    """An earlier run's result for this very file (same digest), seed and track, or None."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return read_submission(out, student, path.name, digest, seed, track)


def grade_all(submissions: list[str], out: Path, solutions: Path | None = None, jobs: int = 1,
              limits: Limits | None = None, budget: float = 900.0, log=print,
              seed: int | None = None, sandbox: Sandbox | None = None,
              resume: bool = False, track: str | None = None) -> list[SubmissionResult]:
    """Grade every submission, write ``out/grades.csv``, records and feedback; return results.
    ``sandbox``: default the strongest available (:class:`SandboxUnavailable` if none);
    ``track``: the name of a :mod:`workshop.tracks` track (default: the full course)."""
    from .. import tracks
    from .feedback import write_feedback

    track_spec = tracks.get(track)

    out = Path(out)
    limits = limits or Limits()
    solutions = Path(solutions or COURSE_ROOT / "solutions")
    index = solution_index(solutions)
    earlier = read_run(out) if resume else {}
    if seed is None:
        seed = earlier.get("seed") if isinstance(earlier.get("seed"), int) else new_seed()
    own_sandbox = sandbox is None
    if own_sandbox:
        sandbox = Sandbox.detect(hide=[out, solutions, *map(Path, submissions)])
    write_run(out, {"seed": seed, "sandbox": sandbox.mode, "solutions": str(solutions.resolve()),
                    "track": track_spec.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    expected = Expected(seed)
    tests_cache: dict[Path, tuple] = {}
    lock = threading.Lock()

    def tests_of(solution: Path) -> tuple:
        with lock:
            if solution not in tests_cache:
                tests_cache[solution] = nbk.graded_tests(nbk.load(solution))
            return tests_cache[solution]

    def one(item, session):
        path, student = item
        done = _already_graded(out, path, student, seed, track_spec.name) if resume else None
        if done is not None:
            if log:
                log(f"{student}/{path.name}: {done.total:g}/{done.max_total:g} (kept)")
            return done
        sol = index.get("*") or index.get(path.name)
        if sol is None:
            res = SubmissionResult(student, path.name, str(path), track=track_spec.name, error=(
                f"no solution notebook named {path.name} under the solutions folder: cannot "
                "know its tests and points (was the file renamed?)"))
        else:
            tests, warnings = tests_of(sol)
            try:
                res = grade_notebook(path, tests, student, expected, limits, budget, sandbox,
                                     session, parallel, track_spec)
            except Exception as err:  # a grader bug must not lose the other submissions  # noqa: BLE001
                res = SubmissionResult(student, path.name, str(path), track=track_spec.name,
                                       error=f"internal grader error: {type(err).__name__}: {err}")
            res.warnings += warnings
        write_submission(res, out, seed)
        write_feedback(res, out / "feedback")
        if log:
            state = f"ERROR {res.error}" if res.error else f"{res.total:g}/{res.max_total:g}"
            log(f"{student}/{path.name}: {state} ({res.seconds:.1f} s)")
        return res

    parallel = tests_at_once(jobs)

    def learner(items):
        """All notebooks of one learner, in one sandboxed session (never shared)."""
        solutions_used = [index.get("*") or index.get(path.name) for path, _ in items]
        tiers = {t.tier for sol in solutions_used if sol is not None for t in tests_of(sol)[0]}
        session = session_for(sandbox, tensorflow="tf" in tiers)
        try:
            return [one(item, session) for item in items]
        finally:
            if session is not None:
                session.close()

    items = find_notebooks(submissions)
    by_learner: dict[str, list] = {}
    for item in items:
        by_learner.setdefault(item[1], []).append(item)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            graded = list(pool.map(learner, by_learner.values()))
    finally:
        if own_sandbox:
            sandbox.close()
    done = {(r.student, r.path): r for group in graded for r in group}
    results = [done[(student, str(path))] for path, student in items]
    write_grades(results, out)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workshop grade", description=__doc__.split("\n")[0])
    ap.add_argument("submissions", nargs="*", help="notebooks, or folders searched for *.ipynb")
    ap.add_argument("--out", default="results", help="output folder (default results/)")
    ap.add_argument("--solutions", default=None,
                    help="solution notebooks (folder or one file); default <course>/solutions")
    ap.add_argument("--jobs", "-j", type=int, default=1,
                    help="learners graded at once (each learner's tests use the cores left free)")
    ap.add_argument("--timeout", type=float, default=60.0, help="wall-clock seconds per test")
    ap.add_argument("--cpu", type=int, default=None, help="CPU seconds per test")
    ap.add_argument("--memory", type=int, default=2048, help="MB of address space per test")
    ap.add_argument("--submission-timeout", type=float, default=900.0,
                    help="wall-clock seconds for all tests of one submission")
    ap.add_argument("--seed", type=int, default=None,
                    help="the hidden cases' seed (default: a new secret one per run, recorded "
                         "in OUT/run.json); give an earlier run's to reproduce its grades")
    ap.add_argument("--track", default=os.environ.get("WORKSHOP_TRACK") or "full",
                    help="the course's track (one-day, two-day, full; default $WORKSHOP_TRACK or "
                         "full): what it does not count is graded and reported, worth 0 of 0")
    ap.add_argument("--resume", action="store_true",
                    help="keep the grades of submissions an interrupted run already finished")
    ap.add_argument("--no-sandbox", action="store_true",
                    help="run learner code WITHOUT operating-system isolation (only for code "
                         "you trust; every record says so)")
    ap.add_argument("--check-sandbox", action="store_true",
                    help="test and print which isolation is in force, then exit")
    ap.add_argument("--bench", action="store_true",
                    help="measure grading speed (the course's solutions as a class of "
                         "--learners submissions, and nbgrader's autograde), then exit")
    ap.add_argument("--learners", type=int, default=30, help="class size for --bench")
    ap.add_argument("--quiet", "-q", action="store_true")
    a = ap.parse_args(argv)
    from .. import tracks

    if a.track not in tracks.TRACKS:
        ap.error(f"no track {a.track!r}; tracks: {', '.join(tracks.TRACKS)}")
    if a.bench:
        from .speed import main as bench

        return bench(learners=a.learners, jobs=a.jobs if a.jobs > 1 else 2)
    if a.check_sandbox:
        rows = check_sandbox(Sandbox.detect(allow_none=True, hide=[Path(a.out)]))
        return 0 if all(held for _, held, _ in rows) else 1
    if not a.submissions:
        ap.error("give the submitted notebooks (or folders of them)")
    limits = Limits(wall=a.timeout, cpu=a.cpu or int(a.timeout) + 5, memory_mb=a.memory)
    hide = [Path(a.out), Path(a.solutions or COURSE_ROOT / "solutions"), *map(Path, a.submissions)]
    try:
        sandbox = Sandbox.detect(allow_none=a.no_sandbox, hide=hide)
    except SandboxUnavailable as err:
        print(f"refusing to grade untrusted code: {err}. To grade code you trust without "
              "isolation, pass --no-sandbox.", file=sys.stderr)
        return 2
    if not sandbox.isolated and not a.quiet:
        print("WARNING: --no-sandbox: learner code runs with your rights, unisolated",
              file=sys.stderr)
    t0 = time.monotonic()
    try:
        with sandbox:
            results = grade_all(a.submissions, Path(a.out),
                                Path(a.solutions) if a.solutions else None, a.jobs, limits,
                                a.submission_timeout, log=None if a.quiet else print,
                                seed=a.seed, sandbox=sandbox, resume=a.resume, track=a.track)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the submissions graded so far are kept in {a.out}; run the same "
              "command with --resume to finish", file=sys.stderr)
        return 130
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
    each in its own process (as the grader runs them), without needing the solutions. The code
    is the learner's own: it runs without the sandbox."""
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


if __name__ == "__main__":
    sys.exit(main())
