"""The operating-system sandbox a learner's code runs in while it is graded (bubblewrap).

Each graded test runs ``python -I runner.py`` inside ``bwrap`` with:

* **its own identity**: as root, a uid of its own from :class:`UidPool` (not root, not the
  grader's uid), switched to by util-linux's ``setpriv`` with every capability dropped; as an
  ordinary user, uid 65534 inside a user namespace (outside, the grader's own uid);
* **a read-only view of only what it needs**: ``/usr``, the Python runtime, the installed
  packages, and the learner-safe part of the course (:data:`LEARNER_SAFE`, staged once per
  grading run by :class:`CourseView`); nothing that computes an answer (:data:`ANSWER_MODULES`),
  no solutions, no submissions, no results; the test's inputs read-only at ``/job``;
* a fresh, private, size-limited ``/tmp`` (tmpfs) and nothing else writable;
* **no network** (its own network namespace: loopback only);
* **its own process space** (PID, IPC and UTS namespaces, a new session, killed with the grader):
  it cannot see, signal or trace the grader or another test, and every process it starts dies
  when the test ends.

Memory, CPU time, file size and process count are capped by the runner with ``setrlimit``; the
wall clock by the grader. As root, one learner's tests share one such sandbox, each in a process
of its own uid (:mod:`workshop.grading.zygote`). :mod:`workshop.grading.probe` tests each promise
live and reports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]          # .../workshop
COURSE_ROOT = PACKAGE_DIR.parent

# The one list of what computes an answer: importing any of these from graded code scores 0,
# and none of them exists inside the sandbox.
ANSWER_MODULES = ("workshop.reference", "workshop.kernels", "workshop.exercises",
                  "workshop.grading.", "workshop.bench", "workshop.evaluation")
# What the sandbox shows of the package (everything else is absent). A new module is hidden
# until it is added here: tests/test_sandbox.py makes every module take a side.
LEARNER_SAFE = ("__init__.py", "conventions.py", "course.py", "vis.py", "diagrams.py", "data",
                "models")
# ``from workshop.grading import check, grade`` in a solution cell: harmless no-ops there.
GRADING_STUB = '''"""Grading is done outside this sandbox: check() and grade() do nothing here."""
NOT_IMPLEMENTED = "not implemented yet"


def check(*args, **kwargs):
    return None


def grade(*args, **kwargs):
    return None
'''
SANDBOX_UID_BASE = int(os.environ.get("WORKSHOP_SANDBOX_UID_BASE", "64000"))
SANDBOX_UID_COUNT = 256          # per grader process; two graders at once use other blocks
USERNS_UID = 65534
TMP_MB = 64
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; "
                "Fedora: `sudo dnf install bubblewrap`) on a Linux machine that allows user "
                "namespaces, or grade as root")


def is_answer_module(name: str) -> bool:
    """``workshop.reference.boxes`` -> True; ``workshop.grading`` (the package) -> False."""
    return name.startswith(ANSWER_MODULES)


class SandboxUnavailable(RuntimeError):
    """No operating-system sandbox on this machine; the message says how to get one."""


class UidPool:
    """Distinct unprivileged uids for concurrent tests (``RLIMIT_NPROC`` counts per uid)."""

    def __init__(self, base: int = SANDBOX_UID_BASE, count: int = SANDBOX_UID_COUNT):
        base += (os.getpid() % 32) * count
        self._free = list(range(base, base + count))
        self._lock = threading.Lock()

    def acquire(self) -> int:
        with self._lock:
            if not self._free:
                raise RuntimeError("no free sandbox uid (too many tests at once)")
            return self._free.pop(0)

    def release(self, uid: int) -> None:
        with self._lock:
            self._free.append(uid)


class CourseView:
    """A staged, read-only copy of the learner-safe part of the package, plus the runner script.

    Layout (in a private temporary folder): ``workshop/`` (the :data:`LEARNER_SAFE` entries and a
    stub ``grading`` package) and ``runner/runner.py``.
    """

    def __init__(self):
        self._outer = Path(tempfile.mkdtemp(prefix="workshop-sandbox-"))   # 0700: ours only
        # removed by close(), or when this view is garbage or the process ends: never left behind
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._outer), True)
        self.root = self._outer / "view"
        package = self.root / "workshop"
        package.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in LEARNER_SAFE:
            src = PACKAGE_DIR / name
            if src.is_dir():
                shutil.copytree(src, package / name, ignore=ignore)
            elif src.exists():
                shutil.copy2(src, package / name)
        (package / "grading").mkdir()
        (package / "grading" / "__init__.py").write_text(GRADING_STUB)
        (self.root / "runner").mkdir()
        for script in ("runner.py", "zygote.py", "contracts.py"):
            shutil.copy2(Path(__file__).with_name(script), self.root / "runner" / script)
        for path in [self.root, *self.root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        self._outer.chmod(0o711)      # the sandbox's uid may pass through, not list

    @property
    def package(self) -> Path:
        return self.root / "workshop"

    @property
    def runner(self) -> Path:
        return self.root / "runner" / "runner.py"

    def close(self) -> None:
        self._cleanup()


def _system_links() -> list[str]:
    """``/bin``, ``/lib``, ... as the host has them: links into ``/usr``, or read-only binds."""
    args = []
    for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    return args


def _python_roots() -> list[Path]:
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                         sys.base_exec_prefix)}
    # a venv's python is a symlink to the base interpreter: bind where it really lives too
    roots.add(Path(sys.executable).resolve().parent.parent)
    # package folders a .pth file adds (never the current folder or the course's own)
    roots |= {Path(p).resolve() for p in sys.path
              if p and ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p)}
    roots = {r for r in roots if not _under(r, Path("/usr"))}
    return sorted(r for r in roots if not any(r != o and _under(r, o) for o in roots))


def _under(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


@dataclass
class Sandbox:
    """How learner code is started: ``mode`` is ``"root"`` (bwrap as root, a uid of its own),
    ``"userns"`` (bwrap in a user namespace) or ``"none"`` (no isolation: ``--no-sandbox``)."""

    mode: str
    bwrap: str = ""
    setpriv: str = ""
    hide: list[Path] = field(default_factory=list)   # folders never shown (results, submissions)
    tmp_mb: int = TMP_MB
    _view: CourseView | None = None
    _uids: UidPool | None = None
    # tests of one or several learners start at once: one view, one uid pool, made once
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def detect(cls, allow_none: bool = False, hide: list[Path] | None = None) -> Sandbox:
        """The strongest sandbox this machine offers; :class:`SandboxUnavailable` if there is
        none (unless ``allow_none``: then ``mode="none"``)."""
        reason = unavailable_reason()
        if reason:
            if allow_none:
                return cls("none")
            raise SandboxUnavailable(f"no sandbox for learner code: {reason}; {INSTALL_HINT}")
        mode = "root" if os.geteuid() == 0 else "userns"
        return cls(mode, bwrap=shutil.which("bwrap") or "", setpriv=shutil.which("setpriv") or "",
                   hide=[Path(h).resolve() for h in (hide or [])])

    @property
    def isolated(self) -> bool:
        return self.mode != "none"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def view(self) -> CourseView:
        with self._lock:
            if self._view is None:
                self._view = CourseView()
            return self._view

    def close(self) -> None:
        with self._lock:
            if self._view is not None:
                self._view.close()
                self._view = None

    def acquire_uid(self) -> int | None:
        if self.mode != "root":
            return None
        with self._lock:
            if self._uids is None:
                self._uids = UidPool()
        return self._uids.acquire()

    def release_uid(self, uid: int | None) -> None:
        if uid is not None and self._uids is not None:
            self._uids.release(uid)

    def command(self, argv: list[str], job_dir: Path | None, uid: int | None) -> list[str]:
        """The command line that runs ``argv`` (a python command) in the sandbox, with
        ``job_dir`` read-only at ``/job``. In mode ``none``: ``argv`` itself."""
        if self.mode == "none":
            return list(argv)
        cmd = self._filesystem([(job_dir, "/job")] if job_dir is not None else [])
        if self.mode == "root":
            cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                    self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all"]
        else:
            cmd += ["--unshare-user", "--uid", str(USERNS_UID), "--gid", str(USERNS_UID),
                    "--cap-drop", "ALL", "--"]
        return cmd + list(argv)

    def zygote_command(self, argv: list[str], jobs_dir: Path) -> list[str]:
        """The command line of one learner's zygote (:mod:`workshop.grading.zygote`; root
        only): ``jobs_dir`` read-only at ``/jobs``; the zygote keeps just the capabilities it
        needs to give each test a uid and a ``/tmp`` folder of its own and to end its processes
        (learner code runs only in its children, which have none)."""
        if self.mode != "root":
            raise ValueError("a zygote needs a sandbox started as root")
        cmd = self._filesystem([(jobs_dir, "/jobs")])
        for cap in ("SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER"):
            cmd += ["--cap-add", f"CAP_{cap}"]
        return cmd + ["--"] + list(argv)

    def _filesystem(self, binds: list[tuple[Path, str]]) -> list[str]:
        # the private /tmp first: folders bound below may live under /tmp themselves
        cmd = [self.bwrap, "--ro-bind", "/usr", "/usr", *_system_links(),
               "--perms", "1777", "--size", str(self.tmp_mb << 20), "--tmpfs", "/tmp"]
        for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
            if os.path.exists(f):
                cmd += ["--ro-bind", f, f]
        bound = [Path("/usr"), *_python_roots()]
        # bwrap makes missing parent folders private (0700): make them passable first
        parents = sorted({a for p in [*bound[1:], PACKAGE_DIR] for a in p.parents
                          if a != Path("/")}, key=lambda a: len(a.parts))
        for folder in parents:
            cmd += ["--perms", "0755", "--dir", str(folder)]
        for root in bound[1:]:
            cmd += ["--ro-bind", str(root), str(root)]
        # anything secret that lies inside a bound folder is covered by an empty folder
        secret = [COURSE_ROOT, *self.hide]
        for s in secret:
            if any(_under(s, b) for b in bound):
                cmd += ["--tmpfs", str(s)]
        cmd += ["--ro-bind", str(self.view.package), str(PACKAGE_DIR),
                "--ro-bind", str(self.view.runner.parent), "/grader"]
        for src, dst in binds:
            cmd += ["--ro-bind", str(src), dst]
        return cmd + ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                      "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
                      "--die-with-parent", "--new-session", "--remount-ro", "/"]

    def describe(self) -> str:
        return {"root": "bubblewrap, a separate unprivileged uid",
                "userns": "bubblewrap in a user namespace",
                "none": "NO SANDBOX (--no-sandbox): learner code ran with the grader's rights"
                }[self.mode]


_PROBE_CACHE: dict[str, str] = {}


def unavailable_reason() -> str:
    """Empty when bwrap is installed and can start a sandbox here, else why not."""
    if "reason" in _PROBE_CACHE:
        return _PROBE_CACHE["reason"]
    reason = ""
    if not sys.platform.startswith("linux"):
        reason = f"bubblewrap needs Linux (this is {sys.platform})"
    elif not shutil.which("bwrap"):
        reason = "bubblewrap (bwrap) is not installed"
    elif os.geteuid() == 0 and not shutil.which("setpriv"):
        reason = "setpriv (util-linux) is not installed"
    else:
        probe = [shutil.which("bwrap"), "--ro-bind", "/usr", "/usr", *_system_links(),
                 "--unshare-pid", "--unshare-net", "--proc", "/proc", "--dev", "/dev"]
        if os.geteuid() != 0:
            probe.append("--unshare-user")
        probe += ["--", shutil.which("true") or "/bin/true"]
        try:
            res = subprocess.run(probe, capture_output=True, text=True, timeout=20, check=False)
            if res.returncode != 0:
                reason = f"bwrap cannot create namespaces here ({res.stderr.strip()[:200]})"
        except (OSError, subprocess.TimeoutExpired) as err:
            reason = f"bwrap did not start ({err})"
    _PROBE_CACHE["reason"] = reason
    return reason
