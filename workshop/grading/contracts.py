"""The contracts every tier keeps, checked by the self-check and the grader alike.

* **It implements the algorithm**: the code neither calls nor references the library's finished
  version of the exercise (``Exercise.answer_calls``, e.g. ``tf.image.non_max_suppression`` for
  NMS); helpers that are not the answer stay allowed. Found statically here (names resolved
  through the code's imports), and at run time by :func:`record_answer_calls`.
* **"Make it fast" does not loop over the data** where the exercise says so
  (``Exercise.no_loops_over``: a ``for``/``while``/comprehension over those arguments).
* **It returns what its docstring says**: the numpy tier a numpy array of the output's kind (an
  index array, not a list); the TF tier, on a public case under
  ``tf.function(jit_compile=True)`` with tensors in, tensors of the reference's dtype (float64 in,
  float64 out).
* **It does not modify its inputs** (an argument changed in place breaks the caller).

This module is also imported by the sandboxed runner (standard library and numpy only at
import time: it must stay importable without the rest of the package).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable

KIND_OF_DTYPE = {"f": "float", "i": "int", "u": "int", "b": "bool"}
PYTHON_SCALARS = {"float": "float", "int": "int", "bool": "bool"}


# == static: library answers and loops ==========================================================
COMMON_ALIASES = {"tf": "tensorflow", "np": "numpy", "cv": "cv2"}


def _aliases(trees: Iterable[ast.AST]) -> dict[str, str]:
    """Local name -> full dotted name, from the import statements in ``trees``."""
    names: dict[str, str] = dict(COMMON_ALIASES)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        names[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        names[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _canonical(name: str) -> str:
    """``tensorflow.keras.layers.X`` and ``keras.layers.X`` are the same thing."""
    return name.replace("tensorflow.keras.", "keras.").replace("tensorflow.compat.v2.", "tensorflow.")


def answer_references(sources: list[str], imports: list[str], answer_calls: Iterable[str],
                      known: dict[str, str] | None = None) -> list[str]:
    """The library answers that ``sources`` (cells) name, as the learner wrote them.
    ``known``: more local names of modules (e.g. a function's globals)."""
    wanted = {_canonical(a) for a in answer_calls}
    if not wanted:
        return []
    trees = []
    for src in [*imports, *sources]:
        try:
            trees.append(ast.parse(src))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    aliases = {**_aliases(trees), **(known or {})}
    found = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Attribute, ast.Name)):
                text = _dotted(node)
                if not text:
                    continue
                head, _, rest = text.partition(".")
                full = aliases.get(head, head) + (f".{rest}" if rest else "")
                if _canonical(full) in wanted:
                    found.append(text if text == full else f"{text} ({full})")
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    if _canonical(f"{node.module}.{a.name}") in wanted:
                        found.append(f"{node.module}.{a.name}")
    return list(dict.fromkeys(found))


SHAPE_CALLS = {"len", "asarray", "array", "asanyarray", "ascontiguousarray", "float64",
               "float32", "int", "float", "convert_to_tensor", "shape", "size", "cast",
               "reshape", "atleast_2d", "copy"}


def _derived(node: ast.AST, names: set[str]) -> bool:
    """``node`` is one of ``names``, a view or conversion of it, its size, or arithmetic on
    those (not the result of another computation on it, e.g. an IoU matrix)."""
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, (ast.Subscript, ast.Attribute, ast.Starred)):
        return _derived(node.value, names)
    if isinstance(node, ast.Call):
        fname = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
            node.func, "id", "")
        if isinstance(node.func, ast.Attribute) and _derived(node.func.value, names):
            return True   # x.reshape(...), x.astype(...)
        return fname in SHAPE_CALLS and bool(node.args) and _derived(node.args[0], names)
    if isinstance(node, ast.BinOp):
        return _derived(node.left, names) or _derived(node.right, names)
    if isinstance(node, ast.UnaryOp):
        return _derived(node.operand, names)
    if isinstance(node, (ast.Tuple, ast.List)):
        return any(_derived(e, names) for e in node.elts)
    return False


def _iterates(node: ast.AST, names: set[str]) -> bool:
    """A loop's iterable that walks over ``names`` (directly, ``range(len(x))``,
    ``range(n)`` with ``n`` a size of ``x``, ``enumerate(x)``, ``zip(x, ...)``). A literal
    tuple or list (``for size, k in ((H, kh), (W, kw))``) is a fixed handful, not the data."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return False
    if _derived(node, names):
        return True
    if isinstance(node, ast.Call):
        fname = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if fname in ("range", "enumerate", "zip", "reversed", "sorted", "ndindex", "ndenumerate"):
            return any(_derived(a, names) for a in node.args)
    return False


def loops_over(source: str, function: str, names: Iterable[str]) -> list[str]:
    """Python loops in ``function`` (defined in ``source``) that walk over one of the arguments
    ``names``: over the argument itself, its rows, or a size taken from it
    (``for i in range(len(boxes))``, ``for y in range(H)`` with ``H = x.shape[0]``), as
    ``"a loop over ... (line N)"``. Loops over other things (kernel taps, ground truths, an IoU
    matrix's columns) are allowed."""
    names = set(names)
    if not names:
        return []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    fn = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.name == function), None)
    if fn is None:
        return []
    tainted = set(names)
    for _ in range(4):   # views and sizes of the arguments (a = np.asarray(boxes); n = len(a))
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign) and _derived(node.value, tainted):
                for t in node.targets:
                    tainted |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    found = []
    for node in ast.walk(fn):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            if _iterates(node.iter, tainted):
                line = getattr(node, "lineno", getattr(node.iter, "lineno", "?"))
                found.append(f"a loop over {_short(node.iter)} (line {line})")
        elif isinstance(node, ast.While) and _mentions(node.test, tainted):
            found.append(f"a while loop on {_short(node.test)} (line {node.lineno})")
    return found


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _short(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except (RecursionError, ValueError):
        return "an expression"
    return text if len(text) <= 40 else text[:37] + "..."


# == at run time =================================================================================
CALLS: list[str] = []     # every recorded call of a library answer, in this process


def record_answer_calls(answer_calls: Iterable[str]) -> None:
    """Wrap each library answer whose module is loaded so that a call is appended to
    :data:`CALLS` (and still answers). Idempotent."""
    for name in answer_calls:
        module_name, _, attr_path = name.partition(".")
        module = sys.modules.get(module_name)
        if module is None or not attr_path:
            continue
        owner, parts = module, attr_path.split(".")
        try:
            for part in parts[:-1]:
                owner = getattr(owner, part)
            target = getattr(owner, parts[-1])
        except Exception:  # noqa: BLE001  (an attribute this version does not have)
            continue
        if getattr(target, "_course_recorded", False):
            continue

        def recorded(*args, _target=target, _name=name, **kwargs):
            CALLS.append(_name)
            return _target(*args, **kwargs)
        recorded._course_recorded = True
        try:
            setattr(owner, parts[-1], recorded)
        except Exception:  # noqa: BLE001, S112  (read-only attributes stay as they are)
            continue


def describe_output(value) -> list[dict]:
    """What came back, part by part: ``{"type": "ndarray"|"tensor"|"list"|..., "dtype": ...}``."""
    parts = value if isinstance(value, tuple) else (value,)
    described = []
    for part in parts:
        kind = type(part).__name__
        if type(part).__module__.startswith("tensorflow") or kind.endswith("Tensor"):
            described.append({"type": "tensor", "dtype": getattr(getattr(part, "dtype", None),
                                                                  "name", str(part.dtype))})
        elif type(part).__module__ == "numpy" and hasattr(part, "dtype"):
            described.append({"type": "ndarray" if kind == "ndarray" else "numpy scalar",
                              "dtype": part.dtype.name})
        else:
            described.append({"type": kind, "dtype": ""})
    return described


def changed_arguments(before: list, after: list, names: list[str]) -> list[str]:
    """The arguments (by name) whose array contents changed during the call."""
    import numpy as np

    changed = []
    for k, (b, a) in enumerate(zip(before, after)):
        if isinstance(b, np.ndarray) and isinstance(a, np.ndarray):
            same = b.shape == a.shape and np.array_equal(b, a, equal_nan=b.dtype.kind in "fc")
            if not same:
                changed.append(names[k] if k < len(names) else f"argument {k + 1}")
    return changed


def output_problem(described: list[dict], tier: str, kinds: list[str],
                   tf_dtypes: list[str] | None = None) -> str:
    """Why the returned types break the tier's contract ("" when they do not)."""
    if tier == "numpy":
        for part, kind in zip(described, kinds):
            if part["type"] in PYTHON_SCALARS:   # a scalar output: a Python number is fine
                got = PYTHON_SCALARS[part["type"]]
                if got != kind and not (kind == "float" and got == "int"):
                    return (f"your numpy tier returns a {part['type']} where a {kind} is "
                            "documented")
                continue
            if part["type"] not in ("ndarray", "numpy scalar"):
                return (f"your numpy tier returns a {part['type']}: return a numpy array (e.g. "
                        f"np.asarray(result{', dtype=np.int64' if kind == 'int' else ''}))")
            got = KIND_OF_DTYPE.get(__import__("numpy").dtype(part["dtype"]).kind, "other")
            if got != kind and not (kind == "float" and got == "float"):
                return (f"your numpy tier returns {part['dtype']} values where {kind} values are "
                        "documented")
    elif tier == "tf":
        for k, part in enumerate(described):
            if part["type"] != "tensor":
                return (f"your TF tier returns a {part['type']}, not a tensor: keep the whole "
                        "computation in TensorFlow (tensors in, tensors out)")
            if tf_dtypes and k < len(tf_dtypes) and part["dtype"] != tf_dtypes[k]:
                return (f"your TF tier returns {part['dtype']} where the documented output is "
                        f"{tf_dtypes[k]} (keep the input's precision: cast to tf.{tf_dtypes[k]})")
    return ""


def case_problem(tier: str | None, described: list[dict], changed: list[str], kinds: list[str],
                 tf_dtypes: list[str] | None = None) -> str:
    """Why one case's call broke a contract ("" when it did not). ``tf_dtypes``: given only for
    the case the TF tier ran under ``tf.function``."""
    if changed:
        return (f"your function changes its argument{'s' if len(changed) > 1 else ''} "
                f"{', '.join(changed)} in place, which breaks the code that calls it: work on a "
                "copy (x = np.array(x, dtype=np.float64) copies; x[:, 2:] -= ... writes into the "
                "caller's array)")
    if tier == "numpy" and described:
        return output_problem(described, "numpy", kinds)
    if tier == "tf" and tf_dtypes is not None and described:
        return output_problem(described, "tf", kinds, tf_dtypes)
    return ""


def answer_message(found: Iterable[str]) -> str:
    names = ", ".join(dict.fromkeys(found))
    return (f"it uses {names}, the library's finished version of what this exercise asks you "
            "to write: implement the algorithm yourself (helpers that are not the answer are "
            "fine)")


def tf_failure(err: BaseException) -> str:
    """The learner-facing reason a TF tier failed under tf.function(jit_compile=True)."""
    text = f"{type(err).__name__}: {err}"
    if "numpy()" in text or "'numpy'" in text or "Tensor.numpy" in text or "__array__" in text \
            or "NumPy" in text or "ndarray" in text:
        why = ("your function leaves TensorFlow: .numpy() and np.asarray() cannot run inside "
               "tf.function")
    elif "XLA" in text or "jit" in text.lower() or "compil" in text:
        why = "your function does not compile with XLA (tf.function(jit_compile=True))"
    else:
        why = "your function fails inside tf.function(jit_compile=True)"
    first = text.splitlines()[0] if text else ""
    return f"{why} ({first[:200]})"
