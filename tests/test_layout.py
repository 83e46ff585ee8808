"""The package's shape: its parts depend on each other in one direction, importing the learner-
facing parts loads no answers, and a long module says at its top why it is long."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workshop"
LONG = 500


def _part(module: str) -> str:
    """``workshop.reference.boxes`` -> ``reference``; ``workshop.vis`` -> ``vis``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``workshop`` module ``path`` imports, at any depth (function-level imports count:
    they are dependencies too, only later)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("workshop"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("workshop"):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":   # an entry point: on top of everything, imported by nothing
            continue
        here = _part(_module_name(path))
        graph.setdefault(here, set()).update(
            _part(m) for m in _imports(path) if _part(m) not in (here, "workshop"))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_parts_of_the_package_form_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_answers_and_the_models_do_not_depend_on_each_other():
    """The models take their stages from the caller; the answers use no model."""
    graph = _graph()
    assert "models" not in graph.get("reference", set())
    assert "models" not in graph.get("kernels", set())
    assert not {"reference", "kernels", "exercises"} & graph.get("models", set())


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", ["workshop.evaluation", "workshop.models.detector",
                                    "workshop.models.detector_training",
                                    "workshop.models.rpn", "workshop.course", "workshop.vis",
                                    "workshop.diagrams", "workshop.data"])
def test_importing_loads_no_answers(module):
    code = (f"import sys, {module}\n"
            "print([m for m in sys.modules if m.startswith(('workshop.reference', "
            "'workshop.kernels', 'workshop.exercises'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "[]", f"importing {module} loaded {out}"


def test_a_long_module_says_why_at_its_top():
    """Over ~500 lines, a module's docstring has a line starting ``Length:`` saying why it stays
    one file."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") <= LONG:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.startswith("Length:") for line in doc.splitlines()):
            unexplained.append(f"{path.relative_to(PACKAGE.parent)} ({text.count(chr(10))} lines)")
    assert not unexplained, "long modules without a reason at the top: " + ", ".join(unexplained)
