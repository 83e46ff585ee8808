"""Run a learner's solution cell in a child process (inside the sandbox) and bring back arrays.

The grader (:mod:`workshop.grading.grader`) never runs learner code in its own process. For one
test it calls :func:`run_program`, which

* writes the cases' inputs to ``inputs.npz`` (``allow_pickle=False``) and a JSON job file in a
  folder the sandbox sees read-only at ``/job``,
* starts ``python -I runner.py /job FD`` (this very file, run as a script: standard library and
  numpy only) in the sandbox of :mod:`workshop.grading.sandbox`, with its stdout/stderr going to
  a pipe read with a cap, and waits with a wall-clock timeout (then kills it all),
* reads the **result channel** (pipe ``FD``) as untrusted input: at most
  :attr:`Limits.result_mb`, progress lines, then a JSON summary and an ``.npz`` of plain numeric
  arrays, each checked before it is loaded (:func:`load_outputs`); anything malformed is a failed
  test with a clear message.

The child, before any learner code runs, sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``,
``RLIMIT_FSIZE``, ``RLIMIT_CORE=0`` and (with a uid of its own) ``RLIMIT_NPROC``; records
attempts to import the answers (they are not in the sandbox at all, so such an import fails
whatever the learner does to the import system); and caps ``sys.stdout``/``sys.stderr``.
It then runs the program (imports, the cells the graded cell depends on, the graded cell), calls
the function on each case (as tensors for the TF tier), converts every output to a numeric
ndarray (``.numpy()`` for tensors, ``np.asarray`` otherwise; object arrays are refused) and
writes them to the channel.

Length: both ends of the result channel (the child that writes it inside the sandbox and
the parent that reads and checks it), kept together so the protocol changes in one place.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sandbox import Sandbox

PRINT_LIMIT = 20_000                 # characters of learner output kept per test


@dataclass
class Limits:
    """Per-test limits: wall-clock seconds (parent), CPU seconds, address space, file size and
    processes (child), and the size of what comes back (parent)."""

    wall: float = 60.0
    cpu: int = 60
    memory_mb: int = 2048
    file_mb: int = 64
    tf_extra_wall: float = 60.0      # TensorFlow's import, on a busy machine
    processes: int = 256             # threads count too (TensorFlow starts a few dozen)
    result_mb: int = 64              # every grading case's outputs fit in well under 1 MB

    def for_tier(self, tier: str | None) -> Limits:
        if tier != "tf":
            return self
        return Limits(self.wall + self.tf_extra_wall, int(self.cpu + self.tf_extra_wall),
                      max(self.memory_mb, 4096), self.file_mb, self.tf_extra_wall,
                      self.processes, self.result_mb)


@dataclass
class CaseRun:
    status: str                      # "ok" | "error" | "not_implemented" | "not_run"
    output: Any = None               # ndarray, or tuple of ndarrays
    error: str = ""
    described: list = field(default_factory=list)   # the returned types (contracts)
    changed: list = field(default_factory=list)     # arguments modified in place


@dataclass
class RunResult:
    """What came back from the child for one test (everything in it is the learner's word,
    except ``status`` for timeouts, crashes and unreadable results)."""

    status: str                      # "ok" | "timeout" | "crashed" | "no_function" | "failed"
    message: str = ""
    cases: list[CaseRun] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)     # answer imports attempted
    tampered: list[str] = field(default_factory=list)    # the import blocker found modified
    setup_errors: list[str] = field(default_factory=list)
    answer_calls: list[str] = field(default_factory=list)  # library answers called
    stdout: str = ""
    seconds: float = 0.0

    @property
    def reached_reference(self) -> list[str]:
        from .sandbox import is_answer_module

        return [b for b in self.blocked if is_answer_module(b)]


# == parent side ===========================================================================
def child_env() -> dict[str, str]:
    """The environment learner code gets: no grader settings, no secrets, one thread each."""
    keep = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME="/tmp", TMPDIR="/tmp", MPLCONFIGDIR="/tmp", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               MPLBACKEND="Agg", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               # a TF tier is compiled with XLA once, to check that it compiles and what it
               # computes, never to time it: the machine-code optimiser's effort is wasted there
               XLA_FLAGS="--xla_backend_optimization_level=0")
    return env


def _encode(value: Any, arrays: dict, key: str) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot cross to the sandbox")
        arrays[key] = value
        return {"array": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, arrays, f"{key}_{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{key}_{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {"dict": {str(k): _encode(v, arrays, f"{key}_{k}") for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot send a {type(value).__name__} to the sandbox")


def uses_tensorflow(program, tier: str | None) -> bool:
    """Whether the test's code will load TensorFlow (a warm process then has it loaded first)."""
    import re

    return tier == "tf" or any(re.search(r"\b(tensorflow|keras)\b|workshop\.(models|data)", s)
                               for s in program.imports)


class OneShot:
    """A new process for one test: in the bwrap sandbox of ``sandbox`` (or, in mode ``none``, a
    plain child process). The zygote (:class:`workshop.grading.zygote.Zygote`) has the same
    methods and forks a warm process instead."""

    def __init__(self, sandbox: Sandbox, env: dict[str, str]):
        self.sandbox, self.env, self.proc = sandbox, env, None

    @property
    def jobs(self) -> None:
        return None

    def start(self, job_dir: Path, uid: int | None, tier: str | None, result_fd: int,
              out_fd: int, warm_tensorflow: bool = False) -> OneShot:
        if self.sandbox.isolated:
            argv = [sys.executable, "-I", "-X", "faulthandler", "/grader/runner.py", "/job",
                    str(result_fd)]
        else:
            argv = [sys.executable, "-I", "-X", "faulthandler", __file__, str(job_dir),
                    str(result_fd)]
        self.proc = subprocess.Popen(self.sandbox.command(argv, job_dir, uid), cwd=job_dir,
                                     env=self.env, stdin=subprocess.DEVNULL, stdout=out_fd,
                                     stderr=out_fd, start_new_session=True,
                                     pass_fds=(result_fd,))
        return self

    def wait(self, timeout: float) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self.stop()   # grandchildren too (in the sandbox, its PID namespace ends with it)
        if self.sandbox.isolated and 128 < code <= 128 + 64:
            code = 128 - code     # a signal, as the sandbox's init reports it (128 + signal)
        return code

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


def run_program(program, cases, tier: str | None, n_outputs: int = 1,
                tf_static: tuple = (), limits: Limits | None = None,
                sandbox: Sandbox | None = None, session=None,
                workdir: str | None = None, contract: dict | None = None) -> RunResult:
    """Run ``program`` (a :class:`workshop.grading.notebook.Program`) on ``cases`` (registry
    :class:`Case` objects) in a child process: forked by ``session`` (a learner's
    :class:`~workshop.grading.zygote.Zygote`) or started anew inside ``sandbox`` (default: none,
    for a learner's own self-check). Never raises for anything the learner did."""
    import numpy as np

    from .sandbox import ANSWER_MODULES, Sandbox

    sandbox = sandbox or Sandbox("none")
    limits = (limits or Limits()).for_tier(tier)
    launcher = session or OneShot(sandbox, child_env())
    with tempfile.TemporaryDirectory(prefix="job-", dir=launcher.jobs or workdir) as tmp:
        tmpdir = Path(tmp)
        arrays: dict[str, np.ndarray] = {}
        encoded = []
        for i, case in enumerate(cases):
            encoded.append({"args": [_encode(a, arrays, f"c{i}_a{j}") for j, a in enumerate(case.args)],
                            "kwargs": {k: _encode(v, arrays, f"c{i}_k{k}") for k, v in case.kwargs.items()}})
        np.savez(tmpdir / "inputs.npz", **arrays)
        child_limits = {"cpu": limits.cpu, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb}
        if sandbox.mode == "root":   # RLIMIT_NPROC counts per uid: only with a uid of its own
            child_limits["nproc"] = limits.processes
        job = {"imports": program.imports, "cells": program.cells, "function": program.function,
               "tier": tier, "n_outputs": n_outputs, "tf_static": list(tf_static),
               "cases": encoded, "limits": child_limits,
               "answer_modules": list(ANSWER_MODULES), **(contract or {})}
        (tmpdir / "job.json").write_text(json.dumps(job))
        uid = sandbox.acquire_uid()
        for path in (tmpdir / "inputs.npz", tmpdir / "job.json", tmpdir):
            if session is not None:   # this test's uid alone may read it
                os.chown(path, uid, uid)
                path.chmod(0o700 if path.is_dir() else 0o600)
            else:
                path.chmod(0o755 if path.is_dir() else 0o644)
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        start = time.monotonic()
        try:
            test = launcher.start(tmpdir.name if session is not None else tmpdir, uid, tier,
                                  result_w, out_w, warm_tensorflow=uses_tensorflow(program, tier))
        except OSError as err:
            for fd in (result_r, out_r):
                os.close(fd)
            sandbox.release_uid(uid)
            return RunResult("failed", message=f"the sandbox could not start: {err}")
        finally:
            os.close(result_w)
            os.close(out_w)
        kept, channel = bytearray(), bytearray()
        overflow = threading.Event()
        out_stream = os.fdopen(out_r, "rb", buffering=0)
        res_stream = os.fdopen(result_r, "rb", buffering=0)
        readers = [threading.Thread(target=_drain, args=(out_stream, kept), daemon=True),
                   threading.Thread(target=_drain_channel, daemon=True,
                                    args=(res_stream, channel, limits.result_mb << 20, overflow,
                                          test.stop))]
        for r in readers:
            r.start()
        failed = ""
        try:
            code = test.wait(limits.wall)
        except OSError as err:
            code, failed = None, f"the sandbox could not start: {err}"
        finally:
            sandbox.release_uid(uid)
            for r in readers:
                r.join(timeout=5)
            out_stream.close()
            res_stream.close()
        seconds = time.monotonic() - start
        if failed:
            return RunResult("failed", message=failed)
        stdout = bytes(kept[:PRINT_LIMIT]).decode("utf-8", errors="replace")
        if len(kept) > PRINT_LIMIT:
            stdout += "\n[... output truncated ...]"
        return _collect(channel, stdout, code, code is None, overflow.is_set(),
                        seconds, len(cases), n_outputs, limits)


def _drain(stream, kept: bytearray, limit: int = PRINT_LIMIT + 1) -> None:
    """Read the child's output to the end, keeping the first ``limit`` bytes (a learner may
    print gigabytes: they are read and dropped, never stored)."""
    while True:
        try:
            chunk = stream.read(1 << 16)
        except (OSError, ValueError):
            return
        if not chunk:
            return
        if len(kept) < limit:
            kept.extend(chunk[: limit - len(kept)])


def _drain_channel(stream, kept: bytearray, limit: int, overflow: threading.Event, stop) -> None:
    """The result channel: kept up to ``limit`` bytes; beyond it the child is stopped."""
    while True:
        try:
            chunk = stream.read(1 << 20)
        except (OSError, ValueError):
            return
        if not chunk:
            return
        if len(kept) + len(chunk) > limit:
            overflow.set()
            stop()
            return
        kept.extend(chunk)


class ChannelError(ValueError):
    """The child's result stream is malformed, too large or holds something not numeric."""


def parse_channel(data: bytes | bytearray) -> tuple[int, dict | None, bytes]:
    """``(last case started, result JSON or None, outputs npz bytes)`` from the result stream:
    lines ``P <case>`` while running, then ``R <json bytes> <npz bytes>`` and the payloads."""
    done, pos = -1, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        pos = end + 1
        if line.startswith(b"P "):
            try:
                done = int(line[2:])
            except ValueError:
                raise ChannelError("progress line unreadable") from None
        elif line.startswith(b"R "):
            try:
                n_json, n_npz = (int(x) for x in line[2:].split())
            except ValueError:
                raise ChannelError("result header unreadable") from None
            if n_json < 0 or n_npz < 0 or pos + n_json + n_npz > len(data):
                raise ChannelError("result truncated")
            try:
                result = json.loads(data[pos:pos + n_json])
            except ValueError:
                raise ChannelError("result is not JSON") from None
            if not isinstance(result, dict):
                raise ChannelError("result is not a JSON object")
            return done, result, bytes(data[pos + n_json:pos + n_json + n_npz])
        else:
            raise ChannelError("unexpected data in the result channel")
    return done, None, b""


def load_outputs(blob: bytes, limit: int, max_arrays: int) -> dict:
    """Plain numeric arrays from an ``.npz`` the child wrote, checked before anything is
    allocated: stored (not compressed) members, at most ``max_arrays`` of them, shapes that
    match their bytes, numeric or bool dtypes only; :class:`ChannelError` otherwise."""
    import io
    import zipfile

    import numpy as np
    from numpy.lib import format as npformat

    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile as err:
        raise ChannelError(f"outputs unreadable ({err})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_arrays:
            raise ChannelError(f"{len(infos)} output arrays, more than the {max_arrays} expected")
        if sum(i.file_size for i in infos) > limit:
            raise ChannelError("outputs larger than the limit")
        arrays = {}
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                raise ChannelError(f"unexpected member {info.filename[:40]!r} in the outputs")
            try:
                with archive.open(info) as f:
                    version = npformat.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = npformat.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dtype = npformat.read_array_header_2_0(f)
                    else:
                        raise ChannelError(f"an output in .npy format {version}")
                    if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields:
                        raise ChannelError(f"an output of dtype {dtype} (not a plain number)")
                    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if nbytes > info.file_size:
                        raise ChannelError("an output's shape does not match its data")
                    data = f.read(nbytes + 1)
                    if len(data) != nbytes:
                        raise ChannelError("an output's shape does not match its data")
            except (ValueError, OSError, zipfile.BadZipFile) as err:
                raise ChannelError(f"outputs unreadable ({err})") from None
            arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
            arrays[info.filename[:-4]] = np.array(arr, order="C")
        return arrays


def _collect(channel: bytearray, stdout: str, code: int, timed_out: bool, overflow: bool,
             seconds: float, n_cases: int, n_outputs: int, limits: Limits) -> RunResult:
    run = RunResult("ok", stdout=stdout, seconds=seconds)
    if overflow:   # never parsed: what came is dropped at once
        channel.clear()
        run.status, run.message = "failed", (
            f"stopped: your function returned more than {limits.result_mb} MB of output")
        return run
    try:
        done, result, npz = parse_channel(channel)
    except ChannelError as err:
        done, result, npz = -1, None, b""
        if not timed_out:
            run.status, run.message = "failed", f"the grader could not read your results: {err}"
            return run
    result = result or {}
    for key in ("blocked", "tampered", "setup_errors", "answer_calls"):
        value = result.get(key, [])
        setattr(run, key, [str(v)[:500] for v in value[:20]] if isinstance(value, list) else [])
    where = (f" while running case {done + 1} of {n_cases}" if 0 <= done < n_cases
             else " before any case ran")
    if timed_out:
        run.status, run.message = "timeout", (
            f"stopped after {limits.wall:.0f} s{where} (an infinite loop, or far too slow)")
        return run
    if not result or code != 0:
        run.status, run.message = "crashed", _crash_message(code, where, stdout, limits)
        return run
    if result.get("status") == "no_function":
        run.status, run.message = "no_function", str(result.get("message", ""))[:1000]
        return run
    try:
        outputs = load_outputs(npz, limits.result_mb << 20, max(1, n_cases * max(1, n_outputs)))
    except ChannelError as err:
        run.status, run.message = "failed", f"the grader could not read your results: {err}"
        return run
    reported = result.get("cases", [])
    if not isinstance(reported, list):
        reported = []
    run.cases = [_case_run(i, c if isinstance(c, dict) else {}, outputs, n_outputs)
                 for i, c in enumerate(reported[:n_cases])]
    while len(run.cases) < n_cases:
        run.cases.append(CaseRun("not_run", error="not run"))
    return run


def _crash_message(code: int | None, where: str, stdout: str, limits: Limits) -> str:
    """Why the child ended without a result: the signal that killed it, or its exit code."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed (memory or CPU limit)",
               "SIGXCPU": f"CPU time limit ({limits.cpu} s) exceeded",
               "SIGABRT": "aborted"}.get(name, name)
        message = f"the process crashed{where}: {why}"
    else:
        message = (f"the process exited (exit code {code}){where}: did the code call sys.exit, "
                   "os._exit, kill its own process or exhaust memory?")
    if "MemoryError" in stdout:
        message += f" (memory limit {limits.memory_mb} MB)"
    return message


def _case_run(i: int, reported: dict, outputs: dict, n_outputs: int) -> CaseRun:
    """Case ``i`` as the child reported it (untrusted: every field checked), with its outputs."""
    if reported.get("status") != "ok":
        status = reported.get("status")
        status = status if status in ("error", "not_implemented") else "error"
        return CaseRun(status, error=str(reported.get("error", ""))[:500])
    described = reported.get("described") if isinstance(reported.get("described"), list) else []
    described = [d for d in described[:16] if isinstance(d, dict)]
    changed = reported.get("changed")
    changed = [str(x)[:40] for x in changed[:8]] if isinstance(changed, list) else []
    try:
        if reported.get("kind") == "seq":
            n = int(reported["n"])
            if not 0 <= n <= max(1, n_outputs) + 8:
                raise ValueError("too many outputs")
            out: Any = tuple(outputs[f"c{i}_o{j}"] for j in range(n))
        else:
            out = outputs[f"c{i}_o"]
    except (KeyError, ValueError, TypeError) as err:
        return CaseRun("error", error=f"output missing: {err}")
    return CaseRun("ok", output=out, described=described, changed=changed)


# == child side (this file run as a script; stdlib + numpy only) ===========================
class _Blocker:
    """First on sys.meta_path: records attempts to import the answers (which the sandbox does
    not contain: the record only names what was tried)."""

    def __init__(self, record: list, prefixes: tuple):
        self.record, self.prefixes = record, prefixes

    def find_spec(self, name, path=None, target=None):
        if name.startswith(self.prefixes):
            self.record.append(name)
            raise ModuleNotFoundError(f"{name} is out of reach while grading", name=name)

    def find_module(self, name, path=None):  # pragma: no cover (old protocol)
        return None


class _CappedWriter:
    def __init__(self, stream, limit: int):
        self.stream, self.left, self.dropped = stream, limit, 0

    def write(self, text):
        text = str(text)
        if self.left > 0:
            piece = text[: self.left]
            self.left -= len(piece)
            try:
                self.stream.write(piece)
            except Exception:  # noqa: BLE001, S110
                pass
            if self.left <= 0:
                try:
                    self.stream.write("\n[... further output dropped ...]\n")
                except Exception:  # noqa: BLE001, S110
                    pass
        self.dropped += max(0, len(text) - max(self.left, 0))
        return len(text)

    def flush(self):
        try:
            self.stream.flush()
        except Exception:  # noqa: BLE001, S110
            pass

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"


class _LazyModule(types.ModuleType):
    """``import tensorflow as tf`` costs seconds: import on first attribute access."""

    def __init__(self, name: str, top: bool):
        super().__init__(name)
        self.__dict__["_lazy"] = (name, top, None)

    def _load(self):
        name, top, mod = self.__dict__["_lazy"]
        if mod is None:
            import importlib

            mod = importlib.import_module(name)
            if top:
                mod = sys.modules[name.split(".")[0]]
            self.__dict__["_lazy"] = (name, top, mod)
        return mod

    def __getattr__(self, attr):
        return getattr(self._load(), attr)

    def __dir__(self):
        return dir(self._load())


def _child_setup(limits: dict, blocked: list, answer_modules: tuple) -> None:
    import resource

    sys.meta_path.insert(0, _Blocker(blocked, answer_modules))
    for name in list(sys.modules):
        if name == "workshop" or name.startswith("workshop."):
            del sys.modules[name]
    try:   # the limit is on top of what is mapped already (a warm process has TensorFlow)
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        mapped = 0
    mem = mapped + (int(limits.get("memory_mb", 2048)) << 20)
    cpu = int(limits.get("cpu", 60))
    fsize = int(limits.get("file_mb", 256)) << 20
    caps = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0)]
    if "nproc" in limits:
        caps.append((resource.RLIMIT_NPROC, int(limits["nproc"])))
    for what, value in caps:
        try:
            resource.setrlimit(what, (value, value))
        except (ValueError, OSError):
            pass
    # `from workshop.grading import check, grade` in a solution cell: harmless no-ops (the
    # sandbox's package has the same stub; this one serves the unsandboxed self-check)
    stub = types.ModuleType("workshop.grading")
    stub.check = stub.grade = lambda *a, **k: None
    stub.NOT_IMPLEMENTED = "not implemented yet"
    sys.modules["workshop.grading"] = stub
    try:
        import workshop  # noqa: F401  (the light package __init__; helpers stay importable)

        sys.modules["workshop"].grading = stub
    except Exception:  # noqa: BLE001, S110
        pass


def _decode(value, arrays):
    if isinstance(value, dict):
        if "array" in value:
            return arrays[value["array"]]
        if "tuple" in value:
            return tuple(_decode(v, arrays) for v in value["tuple"])
        if "dict" in value:
            return {k: _decode(v, arrays) for k, v in value["dict"].items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _as_array(value):
    import numpy as np

    if hasattr(value, "numpy") and callable(value.numpy) and not isinstance(value, np.ndarray):
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"returned a {type(value).__name__}, not a numeric array")
    return np.array(arr, copy=True, order="C")   # a plain ndarray, whatever the subclass


def _describe_error(err: BaseException) -> str:
    import traceback

    tb = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith("<cell")]
    where = f" (line {tb[-1].lineno} of {tb[-1].name})" if tb else ""
    text = str(err)
    if len(text) > 300:
        text = text[:297] + "..."
    return f"raised {type(err).__name__}: {text}{where}"


def _program_namespace(job: dict, setup_errors: list) -> dict:
    """The learner's imports, in a fresh namespace (``import x`` binds a lazy module: it loads
    on first use, so an import the graded code never uses costs nothing)."""
    ns: dict = {"__name__": "__main__", "__builtins__": builtins}
    for stmt in job["imports"]:
        try:
            tree = compile(stmt, "<imports>", "exec", flags=0x400, dont_inherit=True)  # PyCF_ONLY_AST
            node = tree.body[0]
            if type(node).__name__ == "Import":
                for alias in node.names:
                    if alias.asname:
                        ns[alias.asname] = _LazyModule(alias.name, top=False)
                    else:
                        top = alias.name.split(".")[0]
                        ns[top] = _LazyModule(alias.name, top=True)
            else:
                exec(compile(stmt, "<imports>", "exec"), ns)  # noqa: S102
        except BaseException as err:  # noqa: BLE001 - an import that fails is simply absent
            setup_errors.append(f"{stmt}: {type(err).__name__}")
    return ns


def _run_cells(cells: list, ns: dict, setup_errors: list) -> None:
    """The cells the graded function depends on, then its own; an error is noted, not fatal."""
    for label, src in cells:
        try:
            exec(compile(src, f"<cell {label}>", "exec"), ns)  # noqa: S102
        except BaseException as err:  # noqa: BLE001 - SystemExit too
            setup_errors.append(f"cell {label!r} {_describe_error(err)}")


def _load_answer_libraries(ns: dict, answer_calls: list) -> None:
    """Load now the learner's lazily imported libraries that hold a finished answer, so that
    the contract check sees a call to one."""
    libraries = {a.split(".")[0] for a in answer_calls}
    for value in list(ns.values()):
        if isinstance(value, _LazyModule) and value.__dict__["_lazy"][0].split(".")[0] in libraries:
            try:
                value._load()
            except Exception:  # noqa: BLE001, S110
                pass


def _store_output(i: int, out, n_out: int, outputs: dict) -> dict:
    """Case ``i``'s output as plain arrays in ``outputs``; what the summary says of its shape."""
    if n_out > 1 and isinstance(out, (tuple, list)):
        parts = [_as_array(o) for o in out]
        for j, part in enumerate(parts):
            outputs[f"c{i}_o{j}"] = part
        return {"kind": "seq", "n": len(parts)}
    outputs[f"c{i}_o"] = _as_array(out)
    return {"kind": "one"}


def _run_case(i: int, case: dict, fn, job: dict, arrays: dict, outputs: dict, contracts):
    """Call the learner's function on case ``i``: its summary entry for the channel (its
    outputs stored in ``outputs``), and whether to stop (memory exhausted)."""
    import numpy as np

    tier, answer_calls = job.get("tier"), list(job.get("answer_calls", []))
    args = [_decode(a, arrays) for a in case["args"]]
    kwargs = {k: _decode(v, arrays) for k, v in case["kwargs"].items()}
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    originals = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    call = fn
    if tier == "tf":
        try:
            import tensorflow as tf

            static = set(job.get("tf_static", []))
            conv = lambda v: tf.constant(v) if isinstance(v, np.ndarray) else v  # noqa: E731
            args = [conv(a) for a in args]
            kwargs = {k: (v if k in static else conv(v)) for k, v in kwargs.items()}
            if i == job.get("contract_case"):
                call = tf.function(fn, jit_compile=bool(job.get("tf_jit", True)))
        except Exception as err:  # noqa: BLE001
            return {"status": "error", "error": f"TensorFlow: {err}"}, False
    contracts.record_answer_calls(answer_calls)
    try:
        out = call(*args, **kwargs)
    except NotImplementedError:
        return {"status": "not_implemented"}, False
    except MemoryError:
        return {"status": "error", "error": (
            f"raised MemoryError: the memory limit ({job['limits'].get('memory_mb')} MB) "
            "was exceeded; the remaining cases were not run")}, True
    except BaseException as err:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, ...
        if call is not fn:
            return {"status": "error", "contract": True, "error": contracts.tf_failure(err)}, False
        return {"status": "error", "error": _describe_error(err)}, False
    entry = {"status": "ok", "described": contracts.describe_output(out)}
    if tier != "tf":
        changed = contracts.changed_arguments(originals, args, list(job.get("arg_names", [])))
        if changed:
            entry["changed"] = changed
    try:
        entry.update(_store_output(i, out, int(job.get("n_outputs", 1)), outputs))
    except BaseException as err:  # noqa: BLE001
        return {"status": "error", "error": f"{err}"[:300]}, False
    return entry, False


def _child_main(jobdir: str, channel_fd: int) -> None:
    blocked: list[str] = []
    job = json.loads(Path(jobdir, "job.json").read_text())
    answer_modules = tuple(job.get("answer_modules", ()))
    _child_setup(job.get("limits", {}), blocked, answer_modules)
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = _CappedWriter(real_out, PRINT_LIMIT)
    sys.stderr = _CappedWriter(real_err, PRINT_LIMIT)

    import io

    import numpy as np

    savez, dumps, write = np.savez, json.dumps, os.write   # before any learner code runs
    result = {"cases": [], "blocked": blocked, "tampered": [], "setup_errors": []}
    blocker = sys.meta_path[0]

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[write(channel_fd, view):]

    def finish(outputs: dict) -> None:
        if not sys.meta_path or sys.meta_path[0] is not blocker:
            result["tampered"].append("the import blocker was removed from sys.meta_path")
        for name in list(sys.modules):
            if name.startswith(answer_modules) and f"{name} was loaded" not in result["tampered"]:
                result["tampered"].append(f"{name} was loaded")
        buffer = io.BytesIO()
        savez(buffer, **outputs)
        summary = dumps(result).encode()
        payload = buffer.getvalue()
        send(f"R {len(summary)} {len(payload)}\n".encode() + summary + payload)

    ns = _program_namespace(job, result["setup_errors"])
    # A notebook's other cells may import helpers that reach the answers (workshop.evaluation):
    # absent here, such an import is simply absent. Only the graded code's reaching counts.
    del blocked[:]
    _run_cells(job["cells"], ns, result["setup_errors"])
    sys.stdout.flush()
    fn = ns.get(job["function"])
    if not callable(fn):
        result["status"] = "no_function"
        errors = "; ".join(result["setup_errors"][-2:])
        result["message"] = (f"the solution cell does not define a function {job['function']}"
                             + (f" ({errors})" if errors else ""))
        finish({})
        return
    result["status"] = "ran"
    with np.load(Path(jobdir, "inputs.npz"), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import contracts

    outputs: dict = {}
    answer_calls = list(job.get("answer_calls", []))
    _load_answer_libraries(ns, answer_calls)
    for i, case in enumerate(job["cases"]):
        send(f"P {i}\n".encode())
        entry, stop = _run_case(i, case, fn, job, arrays, outputs, contracts)
        result["cases"].append(entry)
        if stop:
            break
    result["answer_calls"] = [c for c in dict.fromkeys(contracts.CALLS) if c in answer_calls]
    send(f"P {len(job['cases'])}\n".encode())
    sys.stdout.flush()
    finish(outputs)


if __name__ == "__main__":
    _child_main(sys.argv[1], int(sys.argv[2]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown (atexit hooks a learner may have registered)
