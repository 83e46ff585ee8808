"""``workshop grade --check-sandbox``: every isolation promise of the sandbox, tested live.

A probe function runs exactly as a learner's solution does when graded (same sandbox, same
runner, same limits, the same warm per-learner process as root) and tries what an attack would:
read the answers and the grader's files, write outside ``/tmp``, fill ``/tmp``, reach the
network and the grader, signal other processes, fork past the process cap, allocate past the
memory cap, and leave a process behind. Each row says what happened.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

from .notebook import Program
from .runner import Limits, run_program
from .sandbox import (
    COURSE_ROOT,
    INSTALL_HINT,
    LEARNER_SAFE,
    PACKAGE_DIR,
    Sandbox,
    _python_roots,
    unavailable_reason,
)
from .zygote import session_for

PROBE = r'''
def probe(grader_pid, port, tmp_mb, nproc, memory_mb, secret):
    import json, os, socket, sys, time
    out = {"uid": [os.getuid(), os.geteuid(), os.getgid()]}

    def attempt(fn):
        try:
            fn()
            return "allowed"
        except BaseException as err:
            return f"{type(err).__name__}: {err}"[:120]

    out["secret_paths"] = {p: os.path.exists(p) for p in secret}
    try:
        import workshop.reference  # noqa
        out["reference"] = "importable"
    except BaseException as err:
        out["reference"] = type(err).__name__
    import workshop
    here = os.path.dirname(workshop.__file__)
    out["package"] = sorted(os.listdir(here))
    out["write_runtime"] = attempt(lambda: open(os.path.join(sys.prefix, "probe-write"), "w"))
    out["write_package"] = attempt(lambda: open(os.path.join(here, "probe-write"), "w"))
    out["write_root"] = attempt(lambda: open("/probe-write", "w"))
    tmp = os.environ.get("TMPDIR", "/tmp")
    # what the sandbox mounted there itself (a runtime that lives under /tmp) aside
    runtime = {os.path.relpath(p, tmp).split(os.sep)[0] for p in
               (sys.prefix, os.path.realpath(sys.executable), here, *sys.path)
               if p and os.path.realpath(p).startswith(tmp.rstrip("/") + "/")}
    out["tmp_listing"] = sorted(set(os.listdir(tmp)) - runtime)

    def fill():   # files of 8 MB each (one file alone stops at the file-size limit)
        for k in range(tmp_mb // 8 + 2):
            with open(os.path.join(tmp, f"fill{k}"), "wb") as f:
                for _ in range(8):
                    f.write(b"\0" * (1 << 20))
    out["tmp_fill"] = attempt(fill)
    for k in range(tmp_mb // 8 + 2):
        if os.path.exists(os.path.join(tmp, f"fill{k}")):
            os.unlink(os.path.join(tmp, f"fill{k}"))
    out["net_public"] = attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2))
    out["net_dns"] = attempt(lambda: socket.getaddrinfo("pypi.org", 443))
    out["net_grader"] = attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
    out["signal_grader"] = attempt(lambda: os.kill(grader_pid, 0))
    out["proc_grader"] = os.path.exists(f"/proc/{grader_pid}")
    others = [int(p) for p in os.listdir("/proc")    # the sandbox's own init (pid 1) aside
              if p.isdigit() and int(p) not in (1, os.getpid())]
    out["pids"] = len(others) + 1
    out["signal_others"] = [attempt(lambda p=p: os.kill(p, 0)) for p in others]
    out["read_others"] = [attempt(lambda p=p: open(f"/proc/{p}/environ").read()) for p in others]
    try:
        block = bytearray((memory_mb + 64) << 20)
        out["memory"] = f"allocated {len(block) >> 20} MB"
        del block
    except MemoryError:
        out["memory"] = f"MemoryError at {memory_mb + 64} MB"
    if nproc:
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
        out["nproc"] = "no per-test process cap (it would count the grader's own processes)"
    sys.stdout.flush()
    if os.fork() == 0:   # a double-forked, setsid'd process that tries to outlive the test
        os.setsid()
        if os.fork() == 0:
            time.sleep(1.0)
            os.write(1, b"\nSURVIVED\n")
            os._exit(0)
        os._exit(0)
    time.sleep(0.1)
    print("PROBE " + json.dumps(out))
    sys.stdout.flush()
    return 0
'''


def _home_samples(n: int = 3) -> list[str]:
    """A few of the grader's own files (its home folder's entries not on the way to Python)."""
    home = Path.home()
    on_the_way = {a for r in _python_roots() for a in [r, *r.parents]}
    try:
        entries = sorted(home.iterdir())
    except OSError:
        return []
    return [str(e) for e in entries if e not in on_the_way][:n]


def check_sandbox(sandbox: Sandbox | None = None, log=print) -> list[tuple[str, bool, str]]:
    """Run the probe as graded code and test each isolation promise; returns
    ``(item, held, evidence)`` rows and prints them (``log=None``: silent)."""
    sandbox = sandbox or Sandbox.detect(allow_none=True)
    rows: list[tuple[str, bool, str]] = []
    if not sandbox.isolated:
        rows.append(("sandbox", False, f"none available: {unavailable_reason()}; {INSTALL_HINT}"))
        _print_rows(rows, log)
        return rows
    limits = Limits(wall=60)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    secret = [str(COURSE_ROOT / "solutions"), str(PACKAGE_DIR / "reference"),
              str(PACKAGE_DIR / "exercises"), str(PACKAGE_DIR / "grading" / "check.py"),
              *map(str, sandbox.hide), *_home_samples()]
    nproc = limits.processes if sandbox.mode == "root" else 0
    case = SimpleNamespace(args=(os.getpid(), port, sandbox.tmp_mb, nproc, limits.memory_mb,
                                 secret), kwargs={})
    program = Program(imports=[], cells=[("probe", PROBE)], function="probe")
    session = session_for(sandbox)
    t0 = time.monotonic()
    try:
        run = run_program(program, [case], "numpy", limits=limits, sandbox=sandbox,
                          session=session)
        first = time.monotonic() - t0
        t1 = time.monotonic()
        trivial = Program(imports=[], cells=[("noop", "def noop():\n    return 0\n")],
                          function="noop")
        run_program(trivial, [SimpleNamespace(args=(), kwargs={})], "numpy", limits=limits,
                    sandbox=sandbox, session=session)
        per_test = time.monotonic() - t1
    finally:
        if session is not None:
            session.close()
    try:
        listener.accept()[0].close()
        reached = True
    except OSError:
        reached = False
    listener.close()
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("PROBE ")), "")
    try:
        probe = json.loads(line[len("PROBE "):])
    except ValueError:
        rows.append(("sandbox", False, f"the probe did not run: {run.status} {run.message} "
                     f"{run.stdout[-300:]}"))
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
    extra = set(probe["package"]) - set(LEARNER_SAFE) - {"grading", "__pycache__"}
    rows.append(("files: course view", not extra, "workshop/ shows " + ", ".join(probe["package"])))
    writes = [probe[k] for k in ("write_runtime", "write_package", "write_root")]
    rows.append(("files: read-only", "allowed" not in writes, writes[0]))
    rows.append(("/tmp: private, size-limited",
                 not probe["tmp_listing"] and probe["tmp_fill"] != "allowed",
                 f"empty at start; writing {sandbox.tmp_mb + 16} MB: {probe['tmp_fill']}"))
    net = all(probe[k] != "allowed" for k in ("net_public", "net_dns", "net_grader")) and not reached
    rows.append(("network", net, f"connect to 1.1.1.1:53: {probe['net_public']}; DNS: "
                 f"{probe['net_dns']}; the grader's 127.0.0.1:{port}: {probe['net_grader']}"))
    hidden = probe["signal_grader"] != "allowed" and not probe["proc_grader"]
    rows.append(("process space: the grader", hidden,
                 f"grader pid {os.getpid()}: signal {probe['signal_grader']}; "
                 f"/proc/{os.getpid()} absent; {probe['pids']} processes visible"))
    others_ok = all(r != "allowed" for r in probe["signal_others"] + probe["read_others"])
    rows.append(("process space: other processes", others_ok,
                 f"{len(probe['signal_others'])} other processes visible in the sandbox besides "
                 "its init, none signalled or read" if others_ok else "another process could be signalled"))
    rows.append(("processes outlive the test", "SURVIVED" not in run.stdout,
                 "a double-forked setsid child " + ("SURVIVED" if "SURVIVED" in run.stdout
                                                    else "was killed when the test ended")))
    capped = sandbox.mode != "root" or bool(probe.get("nproc_capped"))
    rows.append(("process count", capped, probe["nproc"]))
    rows.append(("memory", probe["memory"].startswith("MemoryError"), probe["memory"] +
                 f" (limit {limits.memory_mb} MB)"))
    rows.append(("other limits", True, f"CPU {limits.cpu} s, wall {limits.wall:.0f} s, file size "
                 f"{limits.file_mb} MB, results {limits.result_mb} MB, printed output "
                 "20,000 characters"))
    how = "a warm forked process per test" if session is not None else "a new sandbox per test"
    rows.append(("cost", True, f"{how}: {per_test:.3f} s for a trivial test ({first:.2f} s for "
                 "the first, with the sandbox's start)"))
    _print_rows(rows, log)
    return rows


def _print_rows(rows, log) -> None:
    if not log:
        return
    width = max(len(r[0]) for r in rows)
    for item, held, evidence in rows:
        log(f"{item:<{width}}  {'ok     ' if held else 'OPEN   '}{evidence}")
