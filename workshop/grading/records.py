"""What grading writes: one JSON record per test, ``grades.csv``, the run's own record
(``run.json``: the secret seed of the hidden cases, for the instructor only), all written
atomically (a file on disk is either the old one or the new one), and read back to resume."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


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
    status: str          # passed | failed | not_implemented | missing | violation | contract |
                         # timeout | crashed | error | skipped
    message: str = ""    # learner-facing: why no points (besides the verdict)
    verdict: dict = field(default_factory=dict)
    diagnoses: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stdout: str = ""     # instructor-only (may contain what the learner printed)
    sandbox: str = ""    # how the learner's code was isolated
    optional: str = ""   # why it does not count in the track ("stretch goal", "not in the
                         # one-day track"): graded and reported, worth 0 of 0 points

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
    digest: str = ""     # sha256 of the graded file (to resume a run)
    track: str = ""      # the track it was graded for (workshop.tracks)

    @property
    def total(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_total(self) -> float:
        return sum(t.max_points for t in self.tests)


def safe_name(name: str) -> str:
    """A file name made of ``name`` (a student or notebook name may be anything)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "_"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_folder(out: Path, student: str, notebook: str) -> Path:
    return Path(out) / "records" / safe_name(student) / safe_name(Path(notebook).stem)


def write_submission(res: SubmissionResult, out: Path, seed: int) -> None:
    """One submission's records, then its summary (the summary last: it marks it complete)."""
    folder = record_folder(out, res.student, res.notebook)
    for t in res.tests:
        write_atomic(folder / f"{safe_name(t.grade_id)}.json", json.dumps(asdict(t), indent=1))
    if res.error:
        write_atomic(folder / "_error.json", json.dumps(
            {"student": res.student, "notebook": res.notebook, "error": res.error}, indent=1))
    summary = {"student": res.student, "notebook": res.notebook, "path": res.path,
               "digest": res.digest, "seed": seed, "error": res.error,
               "warnings": res.warnings, "seconds": res.seconds, "track": res.track,
               "tests": [t.grade_id for t in res.tests]}
    write_atomic(folder / "_submission.json", json.dumps(summary, indent=1))


def read_submission(out: Path, student: str, notebook: str, digest: str,
                    seed: int, track: str = "") -> SubmissionResult | None:
    """The records of an earlier, complete grading of the same file with the same seed (and
    track)."""
    folder = record_folder(out, student, notebook)
    try:
        summary = json.loads((folder / "_submission.json").read_text())
        if (summary.get("digest") != digest or summary.get("seed") != seed
                or summary.get("track", "") != track):
            return None
        names = {f.name for f in fields(TestRecord)}
        tests = []
        for gid in summary["tests"]:
            data = json.loads((folder / f"{safe_name(gid)}.json").read_text())
            tests.append(TestRecord(**{k: v for k, v in data.items() if k in names}))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return SubmissionResult(summary["student"], summary["notebook"], summary["path"], tests,
                            summary.get("error", ""), summary.get("warnings", []),
                            summary.get("seconds", 0.0), digest, summary.get("track", ""))


def write_grades(results: list[SubmissionResult], out: Path) -> None:
    """``grades.csv``: one row per submission, one column per test."""
    test_ids = list(dict.fromkeys(t.grade_id for r in results for t in r.tests))
    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(["student", "notebook", "total", "max", "status", *test_ids, "error"])
    for r in results:
        pts = {t.grade_id: t.points for t in r.tests}
        w.writerow([r.student, r.notebook, f"{r.total:g}", f"{r.max_total:g}",
                    "error" if r.error else "graded",
                    *[f"{pts[t]:g}" if t in pts else "" for t in test_ids], r.error])
    write_atomic(Path(out) / "grades.csv", buffer.getvalue())


def write_run(out: Path, info: dict) -> None:
    """``run.json``: how this grading ran, with the secret seed (readable by its owner only)."""
    write_atomic(Path(out) / "run.json", json.dumps(info, indent=1), mode=0o600)


def read_run(out: Path) -> dict:
    try:
        return json.loads((Path(out) / "run.json").read_text())
    except (OSError, ValueError):
        return {}
