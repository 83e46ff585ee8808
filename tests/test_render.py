"""`python -m workshop render`: the course as HTML pages with the outputs of the solution run.

The learner's view shows no solution code (each solution region's lines are looked for in the
page), the instructor's view shows it, every figure is embedded, the index links the chapters in
order, notebooks/ and solutions/ are only read, and a failing or leaking chapter is reported
while the others still render. Rendering chapters 03 and 09 takes about 40 s; chapter 03 alone
(about 15 s) is the fast twin.
"""

import html
import os
import re
from pathlib import Path

import nbformat
import pytest
from private_tmp import private_tempdir

from workshop.grading import notebook as nbk
from workshop.tools import render
from workshop.tools.course_report import NOTEBOOKS, SOLUTIONS

pytestmark = pytest.mark.xdist_group("render")   # each rendering once, for the whole module
OUR_TEMP = ("workshop-notebook-", "workshop-render-")
MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ours_in(folder) -> set[str]:
    return {n for n in os.listdir(folder) if n.startswith(OUR_TEMP)}


def _text(page: str) -> str:
    """What a reader sees: no tags, styles or scripts; entities decoded."""
    page = re.sub(r"(?is)<(style|script)\b.*?</\1>", "", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _solution_regions(stem: str) -> list[tuple[str, list[str]]]:
    """(grade_id, the telling lines of its solution region) for each solution cell of a chapter:
    stripped lines of 8 characters or more that the learner notebook does not show (in its
    sources, or as nbconvert renders it: a hint in the text like "return `x`" is no leak)."""
    from nbconvert import HTMLExporter

    path = NOTEBOOKS / f"{stem}.ipynb"
    sources = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
    learner = sources + _text(HTMLExporter().from_filename(str(path))[0])
    regions = []
    for cell in nbformat.read(SOLUTIONS / f"{stem}.ipynb", as_version=4).cells:
        src = cell.source
        if "### BEGIN SOLUTION" not in src:
            continue
        body = src.split("### BEGIN SOLUTION", 1)[1].split("### END SOLUTION", 1)[0]
        lines = [s for s in (ln.strip() for ln in body.splitlines()) if len(s) >= 8 and s not in learner]
        regions.append((nbk.nbgrader_meta(cell).get("grade_id"), lines))
    return regions


@pytest.fixture(scope="module", params=["03", pytest.param("03,09", marks=pytest.mark.slow)])
def rendered(request, tmp_path_factory):
    only = request.param
    out = tmp_path_factory.mktemp("course") / "site"
    before = {"notebooks": _snapshot(NOTEBOOKS), "solutions": _snapshot(SOLUTIONS)}
    lines = []
    chapters = render.course_chapters()
    selected = render.select(chapters, only)
    with private_tempdir(tmp_path_factory.mktemp("render-tmp")) as scratch:
        results = render.render(selected, out, with_solutions=True, all_chapters=chapters, log=lines.append)
    return {"out": out, "stems": [c.stem for c in selected], "results": results, "log": lines,
            "before": before, "left_in_tmp": _ours_in(scratch), "chapters": chapters}


def test_every_requested_chapter_renders_one_line_each(rendered):
    assert [r.error for r in rendered["results"]] == [None] * len(rendered["stems"]), rendered["log"]
    for stem in rendered["stems"]:
        assert (rendered["out"] / f"{stem}.html").stat().st_size > 10_000
        assert (rendered["out"] / "instructor" / f"{stem}.solutions.html").exists()
        assert any(stem in line and line.rstrip().endswith("ok") and " s " in line
                   for line in rendered["log"]), rendered["log"]
    pages = sorted(p.name for p in rendered["out"].glob("*.html"))
    assert pages == sorted(["index.html"] + [f"{s}.html" for s in rendered["stems"]])


def test_the_index_links_the_chapters_in_order_with_titles(rendered):
    for folder, suffix in ((rendered["out"], ".html"), (rendered["out"] / "instructor", ".solutions.html")):
        index = (folder / "index.html").read_text()
        links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', index)
        assert [href for href, _ in links] == [s + suffix for s in rendered["stems"]]
        titles = {c.stem: c.title for c in rendered["chapters"]}
        for href, title in links:
            assert html.unescape(title) == titles[href[: -len(suffix)]]
        # every chapter is listed with its description, linked or not
        for c in rendered["chapters"]:
            assert html.escape(c.title) in index and c.description
        assert titles["03_iou_nms"].startswith("3. Intersection over union")
        for href, _ in links:
            assert 'href="index.html"' in (folder / href).read_text(), f"{href} has no link back"


def test_figures_are_embedded_and_nothing_but_mathjax_comes_from_the_network(rendered):
    out = rendered["out"]
    for page_path in [*out.glob("*.html"), *(out / "instructor").glob("*.html")]:
        page = page_path.read_text()
        if page_path.name != "index.html":
            images = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
            assert images, f"{page_path.name} has no figure"
            for src in images:
                assert src.startswith("data:image/") or (page_path.parent / src).exists(), src
        for tag in re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page):
            url = re.search(r'(?:src|href)="(https?:)?//', tag)
            if url:
                assert MATHJAX in tag and "async" in tag, f"{page_path.name} loads {tag}"


def test_the_learner_view_shows_no_solution_code(rendered):
    for stem in rendered["stems"]:
        text = _text((rendered["out"] / f"{stem}.html").read_text())
        regions = _solution_regions(stem)
        assert regions and sum(len(lines) for _, lines in regions) > 10
        for grade_id, lines in regions:
            shown = [ln for ln in lines if ln in text]
            assert not shown, f"{stem}: the learner page shows {grade_id}'s solution: {shown[:3]}"
        assert text.count("raise NotImplementedError()") >= len(regions)
        assert "BEGIN SOLUTION" not in text
        # the self-checks' verdicts come from the solution: a note stands in their place
        assert "public checks passed" not in text
        assert text.count(render.TEST_CELL_NOTE) == len(regions)
        assert render.LEARNER_BANNER in text


def test_the_instructor_view_shows_the_solutions(rendered):
    for stem in rendered["stems"]:
        text = _text((rendered["out"] / "instructor" / f"{stem}.solutions.html").read_text())
        for grade_id, lines in _solution_regions(stem):
            missing = [ln for ln in lines if ln not in text]
            assert not missing, f"{stem}: {grade_id}'s solution is not on the instructor page: {missing[:3]}"
        assert "public checks passed" in text and render.INSTRUCTOR_BANNER in text


def test_a_render_changes_neither_notebooks_nor_solutions_and_cleans_up(rendered):
    assert _snapshot(NOTEBOOKS) == rendered["before"]["notebooks"]
    assert _snapshot(SOLUTIONS) == rendered["before"]["solutions"]
    assert rendered["left_in_tmp"] == set()
    out = rendered["out"]
    assert not list(out.rglob("*.part")) and not list(out.rglob("*.ipynb"))


# -- without the course's notebooks: the command line, failures and the leak guard ------------
def test_an_unknown_chapter_exits_2_naming_the_valid_ones(tmp_path, capsys):
    code = render.main(["--only", "03,12", "--out", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert code == 2
    assert "'12'" in err and "03 (03_iou_nms)" in err and "11 (11_detector_as_a_product)" in err
    assert not (tmp_path / "site").exists()
    assert [c.stem for c in render.select(render.course_chapters(), "9,03_iou_nms")] == ["03_iou_nms", "09_map"]


def _course(folder: Path, notebooks: dict[str, list]) -> Path:
    folder.mkdir()
    for name, cells in notebooks.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}\n\nThe {name} chapter. More.")] + cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def _double(then: str = "") -> list:
    code = nbformat.v4.new_code_cell
    return [nbformat.v4.new_markdown_cell("Double each value, then return `list(twice)`."),
            nbk.solution_cell("double", "loops", "    twice = [v * 2 for v in values]  # each doubled\n"
                              "    return list(twice)", "(values)", doc="Twice each value."),
            code("print('doubled:', double_loops([1, 2]))"),
            code("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                 "from IPython.display import display\nfig = plt.figure(figsize=(1, 1))\n"
                 "plt.plot([0, 1])\ndisplay(fig)\nplt.close(fig)"),
            *([code(then)] if then else [])]


def test_a_failing_or_leaking_chapter_is_reported_and_the_others_still_render(tmp_path, capsys):
    course = _course(tmp_path / "course", {
        "01_fine": _double(),
        "02_broken": _double("raise RuntimeError('the data set is missing')"),
        "03_leaky": _double("import inspect\nprint(inspect.getsource(double_loops))"),
    })
    out = tmp_path / "site"
    (out / "instructor").mkdir(parents=True)
    (out / "instructor" / "02_broken.solutions.html").write_text("an older page")
    code = render.main(["--solutions", str(course), "--out", str(out), "--with-solutions"])
    captured = capsys.readouterr()
    assert code == 1
    log = captured.out
    assert re.search(r"02_broken\s+[\d.]+ s\s+FAILED", log)
    assert "failed at cell 6 of 6: raise RuntimeError" in log and "the data set is missing" in log
    assert re.search(r"03_leaky\s+[\d.]+ s\s+FAILED", log)
    assert "would show solution code" in log and "each doubled" in log
    assert "02_broken" in captured.err and "03_leaky" in captured.err
    fine = _text((out / "01_fine.html").read_text())
    assert "doubled: [2, 4]" in fine and "raise NotImplementedError()" in fine and "each doubled" not in fine
    assert "return list(twice)" in fine   # the hint, which the learner notebook shows too
    assert "each doubled" in _text((out / "instructor" / "01_fine.solutions.html").read_text())
    assert "data:image/png;base64," in (out / "01_fine.html").read_text()
    assert sorted(p.name for p in out.glob("*.html")) == ["01_fine.html", "index.html"]
    assert sorted(p.name for p in (out / "instructor").glob("*.html")) == ["01_fine.solutions.html", "index.html"]
    index = (out / "index.html").read_text()
    assert '<a href="01_fine.html">01_fine</a>' in index and "02_broken <span" in index
    assert "did not run" in index
