"""Static checks of learner code, before it runs: reaching for the answers or patching the
checker scores 0 with a message saying why (the sandbox makes such code fail anyway; the
checks give the learner the true reason instead of an ImportError)."""

from __future__ import annotations

import ast

from .notebook import parse
from .sandbox import ANSWER_MODULES, is_answer_module

# `from workshop.grading import check, grade` is the notebooks' own (harmless) self-check
GRADING_PUBLIC = ("check", "grade", "NOT_IMPLEMENTED", "Verdict")
ANSWER_STRINGS = tuple(dict.fromkeys(
    form for m in ANSWER_MODULES for form in (m.rstrip("."), m.rstrip(".").replace(".", "/"))
    if m.rstrip(".") != "workshop.grading"))
ANSWER_ATTRIBUTES = {m.rstrip(".").split(".")[1] for m in ANSWER_MODULES} - {"grading"}
IMPORT_SYSTEM = {("sys", "modules"), ("sys", "meta_path"), ("sys", "path_hooks"),
                 ("sys", "path_importer_cache"), ("sys", "settrace"), ("sys", "setprofile"),
                 ("sys", "_getframe"), ("gc", "get_objects"), ("gc", "get_referrers"),
                 ("builtins", "__import__")}


def _imported_answer(module: str, name: str | None = None) -> str | None:
    """The answer module an import statement reaches, or None."""
    if name is None:
        return module if is_answer_module(module) else None
    if module == "workshop.grading" and name in GRADING_PUBLIC:
        return None
    full = f"{module}.{name}"
    if is_answer_module(module) or is_answer_module(full):
        return full
    return None


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)[:80]
    except (RecursionError, ValueError):
        return "an expression"


def forbidden_bindings(statements: list[str]) -> dict[str, str]:
    """Names that import statements bind to an answer module: ``{"iou_numpy":
    "workshop.reference.boxes.iou_numpy"}``."""
    bound = {}
    for stmt in statements:
        tree = parse(stmt)
        if tree is None or not tree.body:
            continue
        node = tree.body[0]
        if isinstance(node, ast.Import):
            for a in node.names:
                if _imported_answer(a.name):
                    bound[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                reached = _imported_answer(node.module, a.name)
                if reached:
                    bound[a.asname or a.name] = reached
    return bound


def static_violations(src: str, outside: dict[str, str] | None = None) -> list[str]:
    """Why this cell may not earn points (empty: nothing found). ``outside``: names bound to
    answer modules by import statements in other cells."""
    tree = parse(src)
    if tree is None:
        return []  # it will fail on its own, with Python's message
    workshop_names, found = _imports_found(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(s in node.value for s in ANSWER_STRINGS):
                found.append(f"names the reference implementations ({node.value[:60]!r}, "
                             f"line {line})")
        elif isinstance(node, ast.Attribute):
            found += _attribute_violations(node, workshop_names, line)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            found += _name_violations(node, outside or {}, line)
        elif isinstance(node, ast.Call):
            found += _call_violations(node, workshop_names, line)
        found += _patch_violations(node, workshop_names, line)
    return list(dict.fromkeys(found))


def _imports_found(tree: ast.AST) -> tuple[set[str], list[str]]:
    """The names bound to the ``workshop`` package, and the imports of its answers."""
    workshop_names, found = {"workshop"}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("workshop"):
                    workshop_names.add(a.asname or a.name.split(".")[0])
                if _imported_answer(a.name):
                    found.append(f"imports {a.name} (line {node.lineno}), the reference "
                                 "implementations")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if node.module.startswith("workshop"):
                    workshop_names.add(a.asname or a.name)
                reached = _imported_answer(node.module, a.name)
                if reached:
                    found.append(f"imports {reached} (line {node.lineno}), the reference "
                                 "implementations")
    return workshop_names, found


def _attribute_violations(node: ast.Attribute, workshop_names: set[str], line) -> list[str]:
    if not isinstance(node.value, ast.Name):
        return []
    found = []
    pair = (node.value.id, node.attr)
    if node.value.id in workshop_names and node.attr in ANSWER_ATTRIBUTES:
        found.append(f"reaches for workshop.{node.attr} (line {line})")
    if pair in IMPORT_SYSTEM:
        found.append(f"tampers with the import system or the interpreter "
                     f"({'.'.join(pair)}, line {line})")
    return found


def _name_violations(node: ast.Name, outside: dict[str, str], line) -> list[str]:
    found = []
    if node.id in outside:
        found.append(f"uses {node.id} (line {line}), imported from "
                     f"{outside[node.id]} in another cell: the reference implementations")
    if node.id in ("__import__", "__builtins__"):
        found.append(f"uses {node.id} (line {line})")
    return found


def _call_violations(node: ast.Call, workshop_names: set[str], line) -> list[str]:
    found = []
    fname = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
        node.func, "id", "")
    if fname in ("import_module", "__import__", "reload") and not (
            node.args and isinstance(node.args[0], ast.Constant)):
        found.append(f"imports a module by a computed name (line {line})")
    if fname in ("setattr", "delattr") and node.args and _root(node.args[0]) in (
            workshop_names | {"sys", "builtins"}):
        found.append(f"patches {_text(node.args[0])} with {fname} (line {line})")
    return found


def _patch_violations(node: ast.AST, workshop_names: set[str], line) -> list[str]:
    """Assignments to (or deletions of) the checker's, the interpreter's or numpy's attributes."""
    if isinstance(node, (ast.Assign, ast.Delete)):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    else:
        return []
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, (ast.Attribute, ast.Subscript)) and _root(sub) in (
                    workshop_names | {"sys", "builtins", "np", "numpy"}):
                return [f"patches {_text(sub)} (line {line}): the checker, the interpreter or "
                        "numpy"]
    return []
