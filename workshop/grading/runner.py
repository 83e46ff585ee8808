"""Run a learner's solution cell in a sandboxed child process and bring back plain arrays.

The grader (:mod:`workshop.grading.grade`) never runs learner code in its own process. For one
test it calls :func:`run_program`, which

* writes the cases' inputs to ``inputs.npz`` (``allow_pickle=False``) and a JSON job file,
* starts ``python -I runner.py JOBDIR`` (this very file, run as a script: it imports nothing of
  ``workshop`` and only the standard library at module level) in a new session, with its
  stdout/stderr going to files, and waits with a wall-clock timeout (then kills the group),
* reads back ``outputs.npz`` (plain numeric arrays only) and ``result.json``.

The child, before any learner code runs:

* puts an import blocker first on ``sys.meta_path``: ``workshop.reference``,
  ``workshop.exercises`` and ``workshop.grading.*`` cannot be imported (attempts are recorded);
  ``workshop.grading`` itself is a stub whose ``check``/``grade`` do nothing;
* scrubs ``sys.modules`` of ``workshop.*``;
* sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` and ``RLIMIT_CORE=0``;
* caps ``sys.stdout``/``sys.stderr`` (output beyond :data:`PRINT_LIMIT` characters is dropped).

It then runs the program (imports, the cells the graded cell depends on, the graded cell), calls
the function on each case (as tensors for the TF tier), converts every output to a numeric
ndarray (``.numpy()`` for tensors, ``np.asarray`` otherwise; object arrays are refused) and
saves them. Afterwards it checks that the blocker is still in place and that no reference
module got loaded; if not, the result is marked as tampered.
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
from typing import Any

PRINT_LIMIT = 20_000                 # characters of learner output kept per test
FORBIDDEN_PREFIXES = ("workshop.reference", "workshop.exercises", "workshop.grading.",
                      "workshop.bench")
REFERENCE_PREFIXES = ("workshop.reference", "workshop.exercises")


@dataclass
class Limits:
    """Per-test limits: wall-clock seconds (parent), CPU seconds and address space (child)."""

    wall: float = 60.0
    cpu: int = 60
    memory_mb: int = 2048
    file_mb: int = 256
    tf_extra_wall: float = 60.0      # TensorFlow's import, on a busy machine

    def for_tier(self, tier: str | None) -> Limits:
        if tier != "tf":
            return self
        return Limits(self.wall + self.tf_extra_wall, int(self.cpu + self.tf_extra_wall),
                      max(self.memory_mb, 4096), self.file_mb, self.tf_extra_wall)


@dataclass
class CaseRun:
    status: str                      # "ok" | "error" | "not_implemented" | "not_run"
    output: Any = None               # ndarray, or tuple of ndarrays
    error: str = ""


@dataclass
class RunResult:
    """What came back from the child for one test."""

    status: str                      # "ok" | "timeout" | "crashed" | "no_function" | "failed"
    message: str = ""
    cases: list[CaseRun] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)     # blocked imports attempted
    tampered: list[str] = field(default_factory=list)    # sandbox found modified
    setup_errors: list[str] = field(default_factory=list)
    stdout: str = ""
    seconds: float = 0.0

    @property
    def reached_reference(self) -> list[str]:
        return [b for b in self.blocked if b.startswith(REFERENCE_PREFIXES)]


# == parent side ===========================================================================
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


def run_program(program, cases, tier: str | None, n_outputs: int = 1,
                tf_static: tuple = (), limits: Limits | None = None,
                workdir: str | None = None) -> RunResult:
    """Run ``program`` (a :class:`workshop.grading.notebook.Program`) on ``cases`` (registry
    :class:`Case` objects) in a sandboxed child; never raises for anything the learner did."""
    import numpy as np

    limits = (limits or Limits()).for_tier(tier)
    with tempfile.TemporaryDirectory(prefix="workshop-grade-", dir=workdir) as tmp:
        tmpdir = Path(tmp)
        arrays: dict[str, np.ndarray] = {}
        encoded = []
        for i, case in enumerate(cases):
            encoded.append({"args": [_encode(a, arrays, f"c{i}_a{j}") for j, a in enumerate(case.args)],
                            "kwargs": {k: _encode(v, arrays, f"c{i}_k{k}") for k, v in case.kwargs.items()}})
        np.savez(tmpdir / "inputs.npz", **arrays)
        job = {"imports": program.imports, "cells": program.cells, "function": program.function,
               "tier": tier, "n_outputs": n_outputs, "tf_static": list(tf_static),
               "cases": encoded, "limits": {"cpu": limits.cpu, "memory_mb": limits.memory_mb,
                                            "file_mb": limits.file_mb}}
        (tmpdir / "job.json").write_text(json.dumps(job))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NBGRADER", "PYTHON", "JPY", "JUPYTER"))}
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
                   TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", MPLBACKEND="Agg",
                   PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-I", "-X", "faulthandler", __file__, tmp],
                                cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        kept = bytearray()
        reader = threading.Thread(target=_drain, args=(proc.stdout, kept), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=limits.wall)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:  # the whole session: grandchildren too
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
        (tmpdir / "stdout.txt").write_bytes(bytes(kept))
        seconds = time.monotonic() - start
        return _collect(tmpdir, proc.returncode, timed_out, seconds, len(cases), limits)


def _drain(stream, kept: bytearray, limit: int = PRINT_LIMIT + 1) -> None:
    """Read the child's output to the end, keeping the first ``limit`` bytes (a learner may
    print gigabytes: they are read and dropped, never stored)."""
    while True:
        try:
            chunk = stream.read1(1 << 16)
        except (OSError, ValueError):
            return
        if not chunk:
            return
        if len(kept) < limit:
            kept.extend(chunk[: limit - len(kept)])


def _read_text(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return ""
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("\n[... output truncated ...]" if len(data) > limit else "")


def _collect(tmpdir: Path, code: int, timed_out: bool, seconds: float, n_cases: int,
             limits: Limits) -> RunResult:
    import numpy as np

    stdout = _read_text(tmpdir / "stdout.txt", PRINT_LIMIT)
    try:
        done = int((tmpdir / "progress").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        done = -1
    where = (f" while running case {done + 1} of {n_cases}" if 0 <= done < n_cases
             else " before any case ran")
    result: dict = {}
    try:
        result = json.loads((tmpdir / "result.json").read_text())
    except (OSError, ValueError):
        result = {}
    run = RunResult("ok", stdout=stdout, seconds=seconds,
                    blocked=list(result.get("blocked", [])),
                    tampered=list(result.get("tampered", [])),
                    setup_errors=list(result.get("setup_errors", [])))
    if timed_out:
        run.status, run.message = "timeout", (
            f"stopped after {limits.wall:.0f} s{where} (an infinite loop, or far too slow)")
        return run
    if not result or code != 0:
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = {"SIGSEGV": "a segmentation fault", "SIGKILL": "killed (memory or CPU limit)",
                   "SIGXCPU": f"CPU time limit ({limits.cpu} s) exceeded",
                   "SIGABRT": "aborted"}.get(name, name)
            run.status, run.message = "crashed", f"the process crashed{where}: {why}"
        else:
            run.status, run.message = "crashed", (
                f"the process exited (exit code {code}){where}: did the code call sys.exit, "
                "os._exit or exhaust memory?")
        if "MemoryError" in stdout:
            run.message += f" (memory limit {limits.memory_mb} MB)"
        return run
    if result.get("status") == "no_function":
        run.status, run.message = "no_function", result.get("message", "")
        return run
    try:
        outputs = np.load(tmpdir / "outputs.npz", allow_pickle=False)
    except (OSError, ValueError) as err:
        run.status, run.message = "failed", f"outputs unreadable: {err}"
        return run
    with outputs:
        for i, c in enumerate(result.get("cases", [])):
            if c.get("status") != "ok":
                run.cases.append(CaseRun(c.get("status", "error"), error=c.get("error", "")))
                continue
            try:
                if c.get("kind") == "seq":
                    out: Any = tuple(outputs[f"c{i}_o{j}"] for j in range(int(c["n"])))
                else:
                    out = outputs[f"c{i}_o"]
            except (KeyError, ValueError) as err:
                run.cases.append(CaseRun("error", error=f"output missing: {err}"))
                continue
            run.cases.append(CaseRun("ok", output=out))
    while len(run.cases) < n_cases:
        run.cases.append(CaseRun("not_run", error="not run"))
    return run


# == child side (this file run as a script; stdlib + numpy only) ===========================
class _Blocker:
    """First on sys.meta_path: the answers and the checker cannot be imported."""

    def __init__(self, record: list):
        self.record = record

    def find_spec(self, name, path=None, target=None):
        if name == "workshop.grading" or name.startswith(FORBIDDEN_PREFIXES) or name in (
                "workshop.reference", "workshop.exercises"):
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


def _child_setup(limits: dict, blocked: list) -> None:
    import resource

    sys.meta_path.insert(0, _Blocker(blocked))
    for name in list(sys.modules):
        if name == "workshop" or name.startswith("workshop."):
            del sys.modules[name]
    mem = int(limits.get("memory_mb", 2048)) << 20
    cpu = int(limits.get("cpu", 60))
    fsize = int(limits.get("file_mb", 256)) << 20
    for what, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu),
                        (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(what, (value, value))
        except (ValueError, OSError):
            pass
    # `from workshop.grading import check, grade` in a solution cell: harmless no-ops
    stub = types.ModuleType("workshop.grading")
    stub.check = stub.grade = lambda *a, **k: None
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


def _child_main(jobdir: str) -> None:
    blocked: list[str] = []
    job = json.loads(Path(jobdir, "job.json").read_text())
    _child_setup(job.get("limits", {}), blocked)
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = _CappedWriter(real_out, PRINT_LIMIT)
    sys.stderr = _CappedWriter(real_err, PRINT_LIMIT)

    import numpy as np

    result = {"cases": [], "blocked": blocked, "tampered": [], "setup_errors": []}
    progress = os.open(Path(jobdir, "progress"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    blocker = sys.meta_path[0]

    def finish():
        if not sys.meta_path or sys.meta_path[0] is not blocker:
            result["tampered"].append("the import blocker was removed from sys.meta_path")
        for name in list(sys.modules):
            if name.startswith(REFERENCE_PREFIXES) and name not in result["tampered"]:
                result["tampered"].append(f"{name} was loaded")
        Path(jobdir, "result.json").write_text(json.dumps(result))

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
            result["setup_errors"].append(f"{stmt}: {type(err).__name__}")
    # A notebook's other cells may import helpers that reach the answers (workshop.evaluation):
    # blocked there, such an import is simply absent. Only the graded code's reaching counts.
    del blocked[:]
    cells = job["cells"]
    for label, src in cells:
        try:
            exec(compile(src, f"<cell {label}>", "exec"), ns)  # noqa: S102
        except BaseException as err:  # noqa: BLE001 - SystemExit too
            msg = f"cell {label!r} {_describe_error(err)}"
            result["setup_errors"].append(msg)
    sys.stdout.flush()
    fn = ns.get(job["function"])
    if not callable(fn):
        result["status"] = "no_function"
        errors = "; ".join(result["setup_errors"][-2:])
        result["message"] = (f"the solution cell does not define a function {job['function']}"
                             + (f" ({errors})" if errors else ""))
        finish()
        return
    result["status"] = "ran"
    with np.load(Path(jobdir, "inputs.npz"), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    tf = None
    outputs: dict = {}
    n_out = int(job.get("n_outputs", 1))
    static = set(job.get("tf_static", []))
    for i, case in enumerate(job["cases"]):
        os.write(progress, f"{i}\n".encode())
        args = [_decode(a, arrays) for a in case["args"]]
        kwargs = {k: _decode(v, arrays) for k, v in case["kwargs"].items()}
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
        if job.get("tier") == "tf":
            try:
                if tf is None:
                    import tensorflow as tf
                conv = lambda v: tf.constant(v) if isinstance(v, np.ndarray) else v
                args = [conv(a) for a in args]
                kwargs = {k: (v if k in static else conv(v)) for k, v in kwargs.items()}
            except Exception as err:  # noqa: BLE001
                result["cases"].append({"status": "error", "error": f"TensorFlow: {err}"})
                continue
        try:
            out = fn(*args, **kwargs)
        except NotImplementedError:
            result["cases"].append({"status": "not_implemented"})
            continue
        except MemoryError:
            out = None
            result["cases"].append({"status": "error", "error": (
                f"raised MemoryError: the memory limit ({job['limits'].get('memory_mb')} MB) "
                "was exceeded; the remaining cases were not run")})
            break
        except BaseException as err:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, ...
            result["cases"].append({"status": "error", "error": _describe_error(err)})
            continue
        try:
            if n_out > 1 and isinstance(out, (tuple, list)):
                parts = [_as_array(o) for o in out]
                for j, p in enumerate(parts):
                    outputs[f"c{i}_o{j}"] = p
                result["cases"].append({"status": "ok", "kind": "seq", "n": len(parts)})
            else:
                outputs[f"c{i}_o"] = _as_array(out)
                result["cases"].append({"status": "ok", "kind": "one"})
        except BaseException as err:  # noqa: BLE001
            result["cases"].append({"status": "error", "error": f"{err}"[:300]})
    os.write(progress, f"{len(job['cases'])}\n".encode())
    np.savez(Path(jobdir, "outputs.npz"), **outputs)
    sys.stdout.flush()
    finish()


if __name__ == "__main__":
    _child_main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown (atexit hooks a learner may have registered)
