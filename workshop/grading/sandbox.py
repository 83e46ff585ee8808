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
wall clock by the grader. :func:`check_sandbox` tests each promise live and reports it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]          # .../workshop
COURSE_ROOT = PACKAGE_DIR.parent

# The one list of what computes an answer: importing any of these from graded code scores 0,
# and none of them exists inside the sandbox.
ANSWER_MODULES = ("workshop.reference", "workshop.exercises", "workshop.grading.",
                  "workshop.bench", "workshop.evaluation")
# What the sandbox shows of the package (everything else is absent). A new module is hidden
# until it is added here: tests/test_sandbox.py makes every module take a side.
LEARNER_SAFE = ("__init__.py", "conventions.py", "course.py", "vis.py", "data", "models")
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
        shutil.copy2(Path(__file__).with_name("runner.py"), self.root / "runner" / "runner.py")
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
        shutil.rmtree(self._outer, ignore_errors=True)


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
    return sorted(r for r in roots if not _under(r, Path("/usr")))


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

    @classmethod
    def detect(cls, allow_none: bool = False, hide: list[Path] | None = None) -> Sandbox:
        """The strongest sandbox this machine offers; :class:`SandboxUnavailable` if there is
        none (unless ``allow_none``: then ``mode="none"``)."""
        reason = _unavailable_reason()
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
        if self._view is None:
            self._view = CourseView()
        return self._view

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None

    def acquire_uid(self) -> int | None:
        if self.mode != "root":
            return None
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
        cmd = [self.bwrap, "--ro-bind", "/usr", "/usr", *_system_links()]
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
        if job_dir is not None:
            cmd += ["--ro-bind", str(job_dir), "/job"]
        cmd += ["--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(self.tmp_mb << 20), "--tmpfs", "/tmp",
                "--chdir", "/tmp", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
                "--die-with-parent", "--new-session"]
        if self.mode == "root":
            cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                    self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all"]
        else:
            cmd += ["--unshare-user", "--uid", str(USERNS_UID), "--gid", str(USERNS_UID),
                    "--cap-drop", "ALL", "--"]
        return cmd + list(argv)

    def describe(self) -> str:
        return {"root": "bubblewrap, a separate unprivileged uid",
                "userns": "bubblewrap in a user namespace",
                "none": "NO SANDBOX (--no-sandbox): learner code ran with the grader's rights"
                }[self.mode]


_PROBE_CACHE: dict[str, str] = {}


def _unavailable_reason() -> str:
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


# == --check-sandbox: every promise tested live ===============================================
_PROBE = r'''
import json, os, socket, subprocess, sys, time, resource
grader_pid, port, tmp_mb, nproc = (int(a) for a in sys.argv[1:5])
secret = sys.argv[5:]
out = {}
out["uid"] = [os.getuid(), os.geteuid(), os.getgid()]
def attempt(fn):
    try:
        fn()
        return "allowed"
    except Exception as err:
        return f"{type(err).__name__}: {err}"[:120]
out["secret_paths"] = {p: os.path.exists(p) for p in secret}
try:
    import workshop.reference  # noqa
    out["reference"] = "importable"
except Exception as err:
    out["reference"] = f"{type(err).__name__}"
import workshop
out["package"] = sorted(os.listdir(os.path.dirname(workshop.__file__)))
out["write_runtime"] = attempt(lambda: open(os.path.join(sys.prefix, "probe-write"), "w"))
out["write_package"] = attempt(lambda: open(os.path.join(os.path.dirname(workshop.__file__), "x"), "w"))
out["tmp_listing"] = os.listdir("/tmp")
def fill():
    with open("/tmp/fill", "wb") as f:
        for _ in range(tmp_mb + 2):
            f.write(b"\0" * (1 << 20))
out["tmp_fill"] = attempt(fill)
os.unlink("/tmp/fill") if os.path.exists("/tmp/fill") else None
out["net_public"] = attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2))
out["net_dns"] = attempt(lambda: socket.getaddrinfo("pypi.org", 443))
out["net_grader"] = attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
out["signal_grader"] = attempt(lambda: os.kill(grader_pid, 0))
out["proc_grader"] = os.path.exists(f"/proc/{grader_pid}")
out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
if nproc:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    gate_r, gate_w = os.pipe()
    started = 0
    for _ in range(nproc + 8):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            os.close(gate_w)
            os.read(gate_r, 1)
            os._exit(0)
        started += 1
    os.close(gate_w)
    for _ in range(started):
        os.wait()
    out["nproc"] = f"{started} more processes started of {nproc + 8} tried (limit {nproc})"
    out["nproc_capped"] = started < nproc
else:
    out["nproc"] = "no per-sandbox process cap (it would count the grader's own processes)"
# a double-forked, setsid'd process that tries to outlive the test
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1.0)
        os.write(int(os.environ["PROBE_FD"]), b"survived")
        os._exit(0)
    os._exit(0)
time.sleep(0.1)
print(json.dumps(out))
'''


def check_sandbox(sandbox: Sandbox | None = None, log=print) -> list[tuple[str, bool, str]]:
    """Start a probe in the sandbox and test each isolation promise; returns
    ``(item, held, evidence)`` rows and prints them (``log=None``: silent)."""
    from .runner import Limits, child_env

    sandbox = sandbox or Sandbox.detect(allow_none=True)
    limits = Limits()
    rows: list[tuple[str, bool, str]] = []
    if not sandbox.isolated:
        rows.append(("sandbox", False, f"none available: {_unavailable_reason()}; "
                     f"{INSTALL_HINT}"))
        _print_rows(rows, log)
        return rows
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    secret = [str(COURSE_ROOT / "solutions"), str(PACKAGE_DIR / "reference"),
              str(PACKAGE_DIR / "exercises"), str(PACKAGE_DIR / "grading" / "check.py"),
              *map(str, sandbox.hide), *_home_samples()]
    read_end, write_end = os.pipe()
    uid = sandbox.acquire_uid()
    with tempfile.TemporaryDirectory(prefix="workshop-probe-") as tmp:
        Path(tmp).chmod(0o755)
        Path(tmp, "probe.py").write_text(_PROBE)
        Path(tmp, "probe.py").chmod(0o644)
        nproc = limits.processes if sandbox.mode == "root" else 0
        argv = [sys.executable, "-I", "/job/probe.py", str(os.getpid()), str(port),
                str(sandbox.tmp_mb), str(nproc), *secret]
        env = {**child_env(), "PROBE_FD": str(write_end)}
        t0 = time.monotonic()
        proc = subprocess.run(sandbox.command(argv, Path(tmp), uid), env=env, capture_output=True,
                              text=True, timeout=120, pass_fds=(write_end,), check=False)
        seconds = time.monotonic() - t0
    sandbox.release_uid(uid)
    os.close(write_end)
    survived = _read_with_timeout(read_end, 2.0)
    os.close(read_end)
    try:
        listener.accept()[0].close()
        reached = True
    except OSError:
        reached = False
    listener.close()
    try:
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        rows.append(("sandbox", False, f"the probe did not run: {proc.stderr.strip()[:300]}"))
        _print_rows(rows, log)
        return rows
    uid_in = probe["uid"][0]
    if sandbox.mode == "root":
        rows.append(("identity", uid_in not in (0, os.getuid()),
                     f"uid {uid_in} (the grader is uid {os.getuid()}), no capabilities"))
    else:
        rows.append(("identity", False, f"uid {uid_in} in a user namespace (outside: the "
                     f"grader's uid {os.getuid()}; grade as root for a separate uid)"))
    visible = [p for p, seen in probe["secret_paths"].items() if seen]
    rows.append(("files: answers, solutions, results", not visible and probe["reference"] != "importable",
                 "hidden (" + ("; ".join(visible) + " visible" if visible else
                               f"{len(probe['secret_paths'])} paths absent, workshop.reference: "
                               f"{probe['reference']}") + ")"))
    rows.append(("files: course view", not (set(probe["package"]) - set(LEARNER_SAFE) - {"grading", "__pycache__"}),
                 "workshop/ shows " + ", ".join(probe["package"])))
    ro = probe["write_runtime"] != "allowed" and probe["write_package"] != "allowed"
    rows.append(("files: read-only runtime", ro, probe["write_runtime"]))
    rows.append(("/tmp: private, size-limited", not probe["tmp_listing"] and probe["tmp_fill"] != "allowed",
                 f"empty at start; writing {sandbox.tmp_mb + 2} MB: {probe['tmp_fill']}"))
    net = all(probe[k] != "allowed" for k in ("net_public", "net_dns", "net_grader")) and not reached
    rows.append(("network", net, f"connect to 1.1.1.1:53: {probe['net_public']}; DNS: "
                 f"{probe['net_dns']}; the grader's 127.0.0.1:{port}: {probe['net_grader']}"))
    hidden = probe["signal_grader"] != "allowed" and not probe["proc_grader"]
    rows.append(("process space", hidden, f"grader pid {os.getpid()}: signal {probe['signal_grader']}; "
                 f"/proc/{os.getpid()} absent; {len(probe['pids'])} processes visible"))
    rows.append(("processes outlive the test", not survived,
                 "a double-forked setsid child " + ("SURVIVED" if survived else
                                                    "was killed when the test ended")))
    capped = sandbox.mode != "root" or bool(probe.get("nproc_capped"))
    rows.append(("process count", capped, probe["nproc"]))
    rows.append(("limits", True, f"memory {limits.memory_mb} MB, CPU {limits.cpu} s, wall "
                 f"{limits.wall:.0f} s, file size {limits.file_mb} MB, results "
                 f"{limits.result_mb} MB (set per test by the runner)"))
    rows.append(("cost", True, f"{seconds:.2f} s for this probe (sandbox start + python)"))
    _print_rows(rows, log)
    return rows


def _home_samples(n: int = 3) -> list[str]:
    """A few of the grader's own files (its home folder's entries not on the way to Python)."""
    home = Path.home()
    on_the_way = {a for r in _python_roots() for a in [r, *r.parents]}
    try:
        entries = sorted(home.iterdir())
    except OSError:
        return []
    return [str(e) for e in entries if e not in on_the_way][:n]


def _read_with_timeout(fd: int, seconds: float) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], seconds)
    return os.read(fd, 64) if ready else b""


def _print_rows(rows, log) -> None:
    if not log:
        return
    width = max(len(r[0]) for r in rows)
    for item, held, evidence in rows:
        log(f"{item:<{width}}  {'ok     ' if held else 'OPEN   '}{evidence}")
