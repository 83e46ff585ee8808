"""``python -m workshop render``: the course as static HTML pages, with every output.

``python -m workshop render [--out DIR] [--only 03,06] [--with-solutions]`` runs each solution
notebook top to bottom, headless, exactly as the course report does
(:func:`workshop.tools.course_report.run_notebook`, a fresh kernel working in a temporary folder
of its own), and writes one page per chapter and an index into ``DIR`` (default
``build/course/``), with nbconvert's ``lab`` template:

* ``DIR/index.html`` and ``DIR/NN_name.html``, the **learner's view**: every solution cell shows
  the learner's version of its source (what ``make release`` writes: the signature, the
  docstring and ``raise NotImplementedError()``) and no output, every graded test cell shows a
  note instead of its verdict, and every other cell its source and the outputs of the run
  (figures, tables, printed numbers). Before a page is written it is checked: no line of a
  solution region may appear in it unless the learner notebook shows it anyway (a hint in the
  text, say).
* with ``--with-solutions``, also ``DIR/instructor/index.html`` and
  ``DIR/instructor/NN_name.solutions.html``, the **instructor's view** (solution code and
  verdicts shown), each page saying so at its top. Not for learners.

The pages need no network: styles are inlined, figures are embedded as data URIs and no script
is loaded from elsewhere, except MathJax (from its CDN, loaded without blocking the page), which
only typesets the formulas of the markdown cells; offline they read as their LaTeX source.

``notebooks/`` and ``solutions/`` are only read. A notebook that fails to run is reported with
its failing cell; its page is not written (an older one is removed), the other chapters still
render and the command exits 1. An unknown chapter in ``--only`` exits 2.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workshop.grading import notebook as nbk
from workshop.tools.course_report import ROOT, SOLUTIONS, course_notebooks, run_notebook

DEFAULT_OUT = ROOT / "build" / "course"
INSTRUCTOR_DIR = "instructor"
COURSE_TITLE = "Computer vision, hands on"
TEST_CELL_NOTE = ("This cell checks your function on the course's public cases. Its verdict "
                  "appears here when you run it in the notebook.")
LEARNER_BANNER = ("A preview of the chapter, with the outputs of a run of the finished notebook: "
                  "the figures and numbers are what you will see once every exercise in it is "
                  "done. The exercises are left for you to write.")
INSTRUCTOR_BANNER = ("Instructor's copy: this page shows the solutions and the checks' verdicts. "
                     "Do not share it with learners.")
MIN_LEAK_LINE = 8   # shorter solution lines ("pass", "i += 1") are not telling on their own

CSS = """
.course-nav { font-family: var(--jp-ui-font-family, sans-serif); display: flex; gap: 1.5em;
  padding: 0.6em 1em; border-bottom: 1px solid #ddd; margin-bottom: 0.5em; }
.course-nav.bottom { border-top: 1px solid #ddd; border-bottom: none; margin-top: 1em; }
.course-banner { font-family: var(--jp-ui-font-family, sans-serif); margin: 0.5em 1em;
  padding: 0.6em 1em; border-left: 4px solid #1976d2; background: #e3f2fd; }
.course-banner.instructor { border-left-color: #c62828; background: #ffebee; font-weight: bold; }
.course-note { font-style: italic; color: #555; }
"""

TEMPLATE = """{%- extends 'index.html.j2' -%}
{% from 'mathjax.html.j2' import mathjax %}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ mathjax(resources.mathjax_url) | replace('<script src=', '<script async src=') }}
{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}<style type="text/css">{{ resources.course_css }}</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}
{{ resources.course_top }}
{%- endblock body_header -%}
{% block body_footer %}{{ resources.course_bottom }}
{{ super() }}{% endblock body_footer %}
"""


class RenderError(RuntimeError):
    """A chapter could not be rendered (the message says which and why)."""


@dataclass
class Chapter:
    path: Path          # the solution notebook
    title: str          # its first heading
    description: str    # the first sentence after it

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def number(self) -> str:
        return self.stem.split("_", 1)[0]


def _first_heading_and_sentence(nb) -> tuple[str, str]:
    title, sentence = "", ""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = nbk.source(cell).splitlines()
        for i, line in enumerate(lines):
            if not title and line.lstrip().startswith("#"):
                title = line.lstrip("#").strip()
                para = []
                for rest in lines[i + 1:]:
                    if rest.strip():
                        para.append(rest.strip())
                    elif para:
                        break
                text = " ".join(para)
                m = re.match(r"(.+?[.!?](?:\*\*|\*)?)(?=\s+[A-Z(]|$)", text)
                sentence = (m.group(1) if m else text)
                if len(sentence) > 220:
                    sentence = sentence[:220].rsplit(" ", 1)[0] + " …"
        if title:
            break
    return title, sentence


def course_chapters(folder: Path = SOLUTIONS) -> list[Chapter]:
    """Every chapter of the course, in order, with its title and a one-line description."""
    import nbformat

    chapters = []
    for path in course_notebooks(folder):
        title, description = _first_heading_and_sentence(nbformat.read(path, as_version=4))
        chapters.append(Chapter(path, title or path.stem, description))
    return chapters


def select(chapters: list[Chapter], only: str | None) -> list[Chapter]:
    """The chapters ``only`` names ("03,06", "3", "03_iou_nms"; None: all), in course order.

    Raises ValueError naming the unknown ones and the valid names."""
    if not only:
        return list(chapters)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen, unknown = set(), []
    for w in wanted:
        hits = [c.stem for c in chapters
                if w == c.stem or (w.isdigit() and int(w) == int(c.number))]
        if hits:
            chosen.update(hits)
        else:
            unknown.append(w)
    if unknown or not wanted:
        valid = ", ".join(f"{c.number} ({c.stem})" for c in chapters)
        what = ", ".join(repr(u) for u in unknown) or repr(only)
        raise ValueError(f"unknown chapter {what}; the chapters are: {valid}")
    return [c for c in chapters if c.stem in chosen]


# -- the two views ---------------------------------------------------------------------------
def learner_notebook(solution: Path):
    """The learner's version of ``solution``, made by the release itself (nbgrader's
    preprocessors, :func:`workshop.grading.nbgrader_glue.release_notebook`), in memory."""
    import nbformat

    from workshop.grading.nbgrader_glue import release_notebook

    with tempfile.TemporaryDirectory(prefix="workshop-render-") as tmp:
        dst = Path(tmp) / solution.name
        release_notebook(Path(solution), dst)
        return nbformat.read(dst, as_version=4)


def _note_output():
    import nbformat

    return nbformat.v4.new_output("display_data", data={
        "text/plain": f"({TEST_CELL_NOTE})",
        "text/html": f'<p class="course-note">{html.escape(TEST_CELL_NOTE)}</p>'})


def learner_view(executed, learner):
    """The executed solution notebook as a learner may see it: each cell's source from the
    learner's version ``learner`` (same cells, same order), solution cells without output,
    graded test cells with a note instead of their verdict."""
    if len(executed.cells) != len(learner.cells):
        raise RenderError(f"the learner version has {len(learner.cells)} cells, the solution "
                          f"{len(executed.cells)}")
    nb = copy.deepcopy(executed)
    for i, (cell, mine) in enumerate(zip(nb.cells, learner.cells)):
        ids = (nbk.nbgrader_meta(cell).get("grade_id"), nbk.nbgrader_meta(mine).get("grade_id"))
        if cell.cell_type != mine.cell_type or ids[0] != ids[1]:
            raise RenderError(f"cell {i + 1} differs between the solution and the learner version")
        cell.source = mine.source
        meta = nbk.nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            cell.outputs = []
        elif meta.get("grade"):
            cell.outputs = [_note_output()]
    return nb


def solution_lines(solution, learner) -> set[str]:
    """The lines of ``solution``'s solution regions (stripped, at least MIN_LEAK_LINE long) that
    appear nowhere in ``learner``: what the learner's view must never show."""
    shown = "\n".join(nbk.source(c) for c in learner.cells)
    lines = set()
    for cell in solution.cells:
        inside = False
        for line in nbk.source(cell).splitlines():
            s = line.strip()
            if "BEGIN SOLUTION" in s or "END SOLUTION" in s:
                inside = "BEGIN" in s
                continue
            if inside and len(s) >= MIN_LEAK_LINE and s not in shown:
                lines.add(s)
    return lines


def page_text(page: str) -> str:
    """What a reader sees of an HTML page: no tags, styles or scripts, entities decoded."""
    page = re.sub(r"(?is)<(style|script)\b.*?</\1>", "", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


# -- HTML ----------------------------------------------------------------------------------
def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="course.html.j2",
                        extra_loaders=[DictLoader({"course.html.j2": TEMPLATE})],
                        embed_images=True, exclude_anchor_links=True)


def _nav(links: list[tuple[str, str]], bottom: bool = False) -> str:
    items = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in links)
    return f'<nav class="course-nav{" bottom" if bottom else ""}">{items}</nav>'


def to_html(nb, title: str, nav: list[tuple[str, str]], banner: str, instructor: bool,
            exporter=None) -> str:
    exporter = exporter or _exporter()
    kind = "course-banner instructor" if instructor else "course-banner"
    resources = {
        "metadata": {"name": title},
        "course_css": CSS,
        "course_top": _nav(nav) + f'<div class="{kind}">{html.escape(banner)}</div>',
        "course_bottom": _nav(nav, bottom=True),
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def page_name(chapter: Chapter, instructor: bool) -> str:
    return f"{chapter.stem}.solutions.html" if instructor else f"{chapter.stem}.html"


def index_html(chapters: list[Chapter], folder: Path, instructor: bool,
               failed: dict[str, str]) -> str:
    """The index: every chapter in order, linked when its page is in ``folder``."""
    title = COURSE_TITLE + (" (instructor's copy, with solutions)" if instructor else "")
    items = []
    for c in chapters:
        name = page_name(c, instructor)
        head = html.escape(c.title)
        if (folder / name).exists():
            head = f'<a href="{html.escape(name)}">{head}</a>'
        elif c.stem in failed:
            head += ' <span class="missing">(did not run: see the render\'s report)</span>'
        else:
            head += ' <span class="missing">(not rendered)</span>'
        desc = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(c.description))
        desc = re.sub(r"\*\*?([^*]+)\*\*?", r"<em>\1</em>", desc)
        items.append(f"<li>{head}<p>{desc}</p></li>")
    banner = (f'<p class="banner">{html.escape(INSTRUCTOR_BANNER)}</p>' if instructor else
              "<p>Each chapter is a notebook of the course, shown with the outputs of a complete "
              "run. To do the exercises, open it in JupyterLab.</p>")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 52em;
  margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }}
ol.chapters li {{ margin-bottom: 0.8em; }}
ol.chapters p {{ margin: 0.2em 0 0; color: #444; }}
.missing {{ color: #999; font-size: 90%; }}
.banner {{ padding: 0.6em 1em; border-left: 4px solid #c62828; background: #ffebee; font-weight: bold; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{banner}
<ol class="chapters">
{chr(10).join(items)}
</ol>
</body>
</html>
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


# -- the command -----------------------------------------------------------------------------
@dataclass
class Rendered:
    chapter: Chapter
    seconds: float
    error: str | None = None     # why the chapter has no page (None: rendered)


def _failing_cell(run) -> str:
    if run.failed_cell is None or run.notebook is None:
        return "a cell"
    cell = run.notebook.cells[run.failed_cell]
    gid = nbk.nbgrader_meta(cell).get("grade_id")
    first = next((ln for ln in nbk.source(cell).splitlines() if ln.strip()), "")
    where = f"cell {run.failed_cell + 1} of {len(run.notebook.cells)}"
    return where + (f" ({gid})" if gid else "") + (f": {first.strip()[:80]}" if first else "")


def render_chapter(chapter: Chapter, out: Path, all_chapters: list[Chapter],
                   with_solutions: bool = False, timeout: int = 600, exporter=None,
                   coming: frozenset[str] = frozenset()) -> Rendered:
    """Run one chapter and write its page(s); a failure is returned, never raised. The
    previous and next chapters are linked when their page exists or is in ``coming``."""
    run = run_notebook(chapter.path, timeout=timeout, scratch_cwd=True)
    pages = [(out / page_name(chapter, False), False)]
    if with_solutions:
        pages.append((out / INSTRUCTOR_DIR / page_name(chapter, True), True))
    if not run.ok:
        for path, _ in pages:
            path.unlink(missing_ok=True)
        return Rendered(chapter, run.seconds,
                        f"failed at {_failing_cell(run)}\n{run.error}")
    try:
        learner = learner_notebook(chapter.path)
        exporter = exporter or _exporter()
        # what the learner notebook shows anyway (its sources, rendered, with no output)
        shown_anyway = page_text(to_html(learner, chapter.title, [], "", False, exporter))
        leaks = {ln for ln in solution_lines(run.notebook, learner) if ln not in shown_anyway}
        order = [c.stem for c in all_chapters]
        i = order.index(chapter.stem)
        for path, instructor in pages:
            nav = [("← the course", "index.html")]
            for label, j in (("previous", i - 1), ("next", i + 1)):
                if 0 <= j < len(order):
                    other = all_chapters[j]
                    name = page_name(other, instructor)
                    if other.stem in coming or (path.parent / name).exists():
                        nav.append((f"{label}: {other.title}", name))
            nb = run.notebook if instructor else learner_view(run.notebook, learner)
            page = to_html(nb, chapter.title, nav, INSTRUCTOR_BANNER if instructor else LEARNER_BANNER,
                           instructor, exporter)
            if not instructor:
                text = page_text(page)
                shown = sorted(line for line in leaks if line in text)
                if shown:
                    raise RenderError("the learner's page would show solution code: "
                                      + "; ".join(repr(s) for s in shown[:3]))
            _write(path, page)
    except Exception as err:  # noqa: BLE001 - reported per chapter, the others still render
        for path, _ in pages:
            path.unlink(missing_ok=True)
        return Rendered(chapter, run.seconds, f"could not be rendered: {type(err).__name__}: {err}")
    return Rendered(chapter, run.seconds)


def render(chapters: list[Chapter], out: Path = DEFAULT_OUT, with_solutions: bool = False,
           timeout: int = 600, all_chapters: list[Chapter] | None = None,
           log=print) -> list[Rendered]:
    """Render ``chapters`` into ``out`` and (re)write the index(es); one line per chapter."""
    all_chapters = all_chapters or course_chapters()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exporter = _exporter()
    results = []
    for n, chapter in enumerate(chapters, 1):
        done = render_chapter(chapter, out, all_chapters, with_solutions, timeout, exporter,
                              frozenset(c.stem for c in chapters))
        results.append(done)
        status = "ok" if done.error is None else "FAILED"
        log(f"[{n}/{len(chapters)}] {chapter.stem:<30}{done.seconds:>7.1f} s  {status}")
        if done.error:
            log("    " + done.error.replace("\n", "\n    "))
    failed = {r.chapter.stem: r.error for r in results if r.error}
    _write(out / "index.html", index_html(all_chapters, out, False, failed))
    if with_solutions:
        folder = out / INSTRUCTOR_DIR
        _write(folder / "index.html", index_html(all_chapters, folder, True, failed))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workshop render",
                                 description=__doc__.split("\n\n")[0].split(": ", 1)[-1])
    ap.add_argument("--out", default=str(DEFAULT_OUT),
                    help="folder for the pages (default: build/course/)")
    ap.add_argument("--only", help="chapters to render, by number or name: 03,06 (default: all)")
    ap.add_argument("--format", default="html", choices=["html"], help="output format")
    ap.add_argument("--with-solutions", action="store_true",
                    help=f"also the instructor's view, solutions shown, in OUT/{INSTRUCTOR_DIR}/")
    ap.add_argument("--timeout", type=int, default=600, help="seconds a cell may run")
    ap.add_argument("--solutions", default=str(SOLUTIONS),
                    help="folder of the solution notebooks (default: solutions/)")
    args = ap.parse_args(argv)
    all_chapters = course_chapters(Path(args.solutions))
    if not all_chapters:
        print(f"render: no course notebooks (NN_name.ipynb) in {args.solutions}", file=sys.stderr)
        return 2
    try:
        chapters = select(all_chapters, args.only)
    except ValueError as err:
        print(f"render: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    results = render(chapters, out, args.with_solutions, args.timeout, all_chapters)
    failed = [r for r in results if r.error]
    print(f"the course: {out / 'index.html'} ({len(results) - len(failed)}/{len(results)} "
          "chapters rendered)")
    if args.with_solutions:
        print(f"the instructor's copy (solutions shown, not for learners): "
              f"{out / INSTRUCTOR_DIR / 'index.html'}")
    elif (out / INSTRUCTOR_DIR).exists():
        print(f"note: {out / INSTRUCTOR_DIR}/ holds solutions from an earlier render; "
              "leave it out when you publish the course")
    if failed:
        print("not rendered: " + ", ".join(r.chapter.stem for r in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
