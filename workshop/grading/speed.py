"""``python -m workshop grade --bench``: how fast a class is graded, measured side by side.

Rows (all in one run, on the course's own solution notebooks as the submissions, so every test
runs to the end and must earn full marks):

* the sandbox's cost per test: a trivial test in a learner's warm sandbox (the path used as
  root), in a new sandbox per test (as an ordinary user) and in a plain child process;
* one full submission (every notebook) with ``--jobs 1``;
* a class of ``--learners`` full submissions with ``--jobs``;
* nbgrader's ``autograde`` of the same full submission (one ``nbgrader autograde`` per
  assignment, through the course's configuration, i.e. the same sandboxed verdicts).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from .notebook import Program
from .runner import Limits, run_program
from .sandbox import COURSE_ROOT, Sandbox
from .zygote import session_for


def _trivial_cost(sandbox: Sandbox, repeat: int = 10) -> float:
    program = Program(imports=[], cells=[("noop", "def noop():\n    return 0\n")],
                      function="noop")
    case = SimpleNamespace(args=(), kwargs={})
    session = session_for(sandbox) if sandbox.mode == "root" else None
    try:
        run_program(program, [case], "numpy", limits=Limits(), sandbox=sandbox, session=session)
        t0 = time.perf_counter()
        for _ in range(repeat):
            run = run_program(program, [case], "numpy", limits=Limits(), sandbox=sandbox,
                              session=session)
            assert run.status == "ok", run.message
        return (time.perf_counter() - t0) / repeat
    finally:
        if session is not None:
            session.close()


def _class(folder: Path, solutions: Path, learners: int) -> Path:
    for k in range(learners):
        dst = folder / f"learner{k:02d}"
        dst.mkdir(parents=True)
        for nb in sorted(solutions.glob("*.ipynb")):
            shutil.copy(nb, dst / nb.name)
    return folder


def _grade(subs: Path, out: Path, jobs: int, solutions: Path) -> tuple[float, float, float, int]:
    from .grader import grade_all

    t0 = time.perf_counter()
    results = grade_all([str(subs)], out, solutions, jobs=jobs, log=None)
    seconds = time.perf_counter() - t0
    tests = sum(len(r.tests) for r in results)
    return seconds, sum(r.total for r in results), sum(r.max_total for r in results), tests


def _nbgrader_autograde(work: Path, solutions: Path) -> tuple[float, float, float]:
    """Seconds for ``nbgrader autograde`` of one full submission, its points and maximum."""
    import csv

    course = work / "course"
    course.mkdir()
    shutil.copy(COURSE_ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": bindir + ":/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(*args):
        subprocess.run([sys.executable, "-m", *args], cwd=course, env=env, check=True,
                       capture_output=True, text=True)

    run("workshop", "release", "--root", str(course), "--solutions", str(solutions), "--out",
        str(course / "notebooks"))
    assignments = sorted(nb.stem for nb in solutions.glob("*.ipynb"))
    for a in assignments:
        run("nbgrader", "generate_assignment", a)
        dst = course / "nbgrader" / "submitted" / "alice" / a
        dst.mkdir(parents=True)
        shutil.copy(solutions / f"{a}.ipynb", dst / f"{a}.ipynb")
    t0 = time.perf_counter()
    for a in tqdm(assignments, desc="nbgrader autograde", leave=False):
        run("nbgrader", "autograde", a)
    seconds = time.perf_counter() - t0
    run("nbgrader", "export")
    with open(course / "nbgrader" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return seconds, sum(float(r["raw_score"]) for r in rows), sum(float(r["max_score"])
                                                                  for r in rows)


def main(learners: int = 30, jobs: int = 2, nbgrader: bool = True) -> int:
    solutions = COURSE_ROOT / "solutions"
    sandbox = Sandbox.detect(allow_none=True)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="workshop-grade-bench-") as tmp:
        tmp = Path(tmp)
        print("measuring the sandbox's cost per test ...", file=sys.stderr)
        if sandbox.mode == "root":
            rows.append(("trivial test, learner's warm sandbox (as root)",
                         f"{_trivial_cost(sandbox) * 1000:.0f} ms", ""))
        if sandbox.isolated:
            with Sandbox("userns", bwrap=sandbox.bwrap) as fresh:
                rows.append(("trivial test, a new sandbox per test (ordinary user)",
                             f"{_trivial_cost(fresh) * 1000:.0f} ms", ""))
        rows.append(("trivial test, plain child process (--no-sandbox)",
                     f"{_trivial_cost(Sandbox('none')) * 1000:.0f} ms", ""))
        print("grading one full submission ...", file=sys.stderr)
        one = _class(tmp / "one", solutions, 1)
        s, pts, mx, n = _grade(one, tmp / "out-one", 1, solutions)
        rows.append((f"1 full submission ({n} tests), --jobs 1", f"{s:.1f} s",
                     f"{pts:g}/{mx:g} points"))
        print(f"grading {learners} full submissions ...", file=sys.stderr)
        many = _class(tmp / "many", solutions, learners)
        s, pts, mx, n = _grade(many, tmp / "out-many", jobs, solutions)
        rows.append((f"{learners} full submissions ({n} tests), --jobs {jobs}", f"{s:.1f} s",
                     f"{pts:g}/{mx:g} points"))
        if nbgrader:
            print("nbgrader autograde of one full submission ...", file=sys.stderr)
            s, pts, mx = _nbgrader_autograde(tmp, solutions)
            rows.append(("nbgrader autograde, 1 full submission (one command per notebook)",
                         f"{s:.1f} s", f"{pts:g}/{mx:g} points"))
    print(f"sandbox: {sandbox.describe()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'time':>9}  result")
    for what, t, result in rows:
        print(f"{what:<{width}}  {t:>9}  {result}")
    return 0
