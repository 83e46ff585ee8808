"""Per-learner feedback from ``workshop grade``: Markdown and HTML, one file each per notebook.

Each test shows its points, the verdict (public cases in full; hidden cases by name and kind of
problem only) and the diagnosis. Never included: hidden inputs or expected values, test-cell
code, or what the learner's code printed while grading (it may echo hidden inputs).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from .records import safe_name, write_atomic

STATUS_TEXT = {
    "passed": "passed", "failed": "failed", "not_implemented": "not implemented yet",
    "missing": "solution cell missing", "violation": "no points (rules)",
    "timeout": "timed out", "crashed": "crashed", "error": "could not be checked",
    "skipped": "not graded (time budget)", "contract": "breaks the tier's contract",
}


def status_text(t) -> str:
    """A test's result for the learner; one that does not count in the track says why
    ("stretch goal, not counted: passed")."""
    text = STATUS_TEXT.get(t.status, t.status)
    return f"{t.optional}, not counted: {text}" if t.optional else text


def _track_line(sub) -> str:
    return f"Track: {sub.track}" if sub.track else ""


def _verdict_text(t) -> str:
    report = (t.verdict or {}).get("report", "")
    return report if isinstance(report, str) else ""


_MD_SPECIAL = re.compile(r"([\\`*{}\[\]<>|~&])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_LIST = re.compile(r"^(\d+)([.)])")
_MD_BLOCK_START = re.compile(r"^([#>=+-])")


def md_text(text: str) -> str:
    """Any text (it may come from learner code) as inert Markdown: one line, every character
    that Markdown or HTML would act on escaped (underscores inside words stay as they are)."""
    flat = " ".join(str(text).split())
    escaped = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), flat)
    escaped = _MD_LIST.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped)
    return _MD_BLOCK_START.sub(lambda m: "\\" + m.group(1), escaped)


def md_block(text: str) -> str:
    """Any text as an indented code block: literal in every Markdown dialect (nothing in it can
    end the block or become HTML)."""
    return "\n".join("    " + line for line in str(text).splitlines())


def render_markdown(sub) -> str:
    lines = [f"# Feedback: {md_text(sub.notebook)}", "", f"Student: {md_text(sub.student)}", ""]
    if sub.track:
        lines += [md_text(_track_line(sub)), ""]
    if sub.error:
        lines += ["**This notebook could not be graded.**", "", md_text(sub.error), ""]
        return "\n".join(lines)
    lines += [f"**Total: {sub.total:g} / {sub.max_total:g} points**", "",
              "| test | points | result |", "|---|---|---|"]
    for t in sub.tests:
        lines.append(f"| {md_text(t.exercise + '_' + t.tier)} | {t.points:g} / "
                     f"{t.max_points:g} | {md_text(status_text(t))} |")
    for t in sub.tests:
        lines += ["", f"## {md_text(t.exercise)} ({md_text(t.tier)}): {t.points:g} / "
                  f"{t.max_points:g}" + (f" ({md_text(t.optional)}, not counted)" if t.optional else "")]
        if t.message:
            lines += ["", md_text(t.message)]
        report = _verdict_text(t)
        if report:
            lines += ["", md_block(report)]
    lines.append("")
    return "\n".join(lines)


CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto} "
       "table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px} "
       "pre{background:#f6f8fa;padding:8px;white-space:pre-wrap} "
       ".passed{color:#1a7f37} .bad{color:#cf222e} .optional{color:#57606a}")


def render_html(sub) -> str:
    esc = html.escape
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback: "
            f"{esc(sub.notebook)}</title><style>{CSS}</style></head><body>")
    parts = [head, (f"<h1>Feedback: {esc(sub.notebook)}</h1><p>Student: <code>"
                    f"{esc(sub.student)}</code></p>")]
    if sub.track:
        parts.append(f"<p>{esc(_track_line(sub))}</p>")
    if sub.error:
        parts.append(f"<p class='bad'><b>This notebook could not be graded.</b></p>"
                     f"<p>{esc(sub.error)}</p></body></html>")
        return "".join(parts)
    parts.append(f"<p><b>Total: {sub.total:g} / {sub.max_total:g} points</b></p><table>"
                 "<tr><th>test</th><th>points</th><th>result</th></tr>")
    for t in sub.tests:
        cls = "passed" if t.status == "passed" else "optional" if t.optional else "bad"
        parts.append(f"<tr><td><code>{esc(t.exercise)}_{esc(t.tier)}</code></td><td>"
                     f"{t.points:g} / {t.max_points:g}</td><td class='{cls}'>"
                     f"{esc(status_text(t))}</td></tr>")
    parts.append("</table>")
    for t in sub.tests:
        parts.append(f"<h2>{esc(t.exercise)} ({esc(t.tier)}): {t.points:g} / "
                     f"{t.max_points:g}" + (f" ({esc(t.optional)}, not counted)" if t.optional
                                            else "") + "</h2>")
        if t.message:
            parts.append(f"<p>{esc(t.message)}</p>")
        report = _verdict_text(t)
        if report:
            parts.append(f"<pre>{esc(report)}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write_feedback(sub, folder: Path) -> tuple[Path, Path]:
    out = Path(folder) / safe_name(sub.student)
    stem = safe_name(Path(sub.notebook).stem)
    md, htm = out / f"{stem}.md", out / f"{stem}.html"
    write_atomic(md, render_markdown(sub))
    write_atomic(htm, render_html(sub))
    return md, htm
