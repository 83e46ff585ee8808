"""Per-learner feedback from ``workshop grade``: Markdown and HTML, one file each per notebook.

Each test shows its points, the verdict (public cases in full; hidden cases by name and kind of
problem only) and the diagnosis. Never included: hidden inputs or expected values, test-cell
code, or what the learner's code printed while grading (it may echo hidden inputs).
"""

from __future__ import annotations

import html
from pathlib import Path

STATUS_TEXT = {
    "passed": "passed", "failed": "failed", "not_implemented": "not implemented yet",
    "missing": "solution cell missing", "violation": "no points (rules)",
    "timeout": "timed out", "crashed": "crashed", "error": "could not be checked",
    "skipped": "not graded (time budget)",
}


def _verdict_text(t) -> str:
    return (t.verdict or {}).get("report", "")


def render_markdown(sub) -> str:
    lines = [f"# Feedback: {sub.notebook}", "", f"Student: `{sub.student}`", ""]
    if sub.error:
        lines += ["**This notebook could not be graded.**", "", sub.error, ""]
        return "\n".join(lines)
    lines += [f"**Total: {sub.total:g} / {sub.max_total:g} points**", "",
              "| test | points | result |", "|---|---|---|"]
    for t in sub.tests:
        lines.append(f"| `{t.exercise}_{t.tier}` | {t.points:g} / {t.max_points:g} | "
                     f"{STATUS_TEXT.get(t.status, t.status)} |")
    for t in sub.tests:
        lines += ["", f"## {t.exercise} ({t.tier}): {t.points:g} / {t.max_points:g}"]
        if t.message:
            lines += ["", t.message]
        report = _verdict_text(t)
        if report:
            lines += ["", "```", report, "```"]
    lines.append("")
    return "\n".join(lines)


def render_html(sub) -> str:
    esc = html.escape
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feedback: "
            f"{esc(sub.notebook)}</title><style>body{{font-family:sans-serif;max-width:60em;"
            "margin:2em auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;"
            "padding:4px 8px}} pre{{background:#f6f8fa;padding:8px;white-space:pre-wrap}}"
            ".passed{{color:#1a7f37}} .bad{{color:#cf222e}}</style></head><body>")
    parts = [head, (f"<h1>Feedback: {esc(sub.notebook)}</h1><p>Student: <code>"
                    f"{esc(sub.student)}</code></p>")]
    if sub.error:
        parts.append(f"<p class='bad'><b>This notebook could not be graded.</b></p>"
                     f"<p>{esc(sub.error)}</p></body></html>")
        return "".join(parts)
    parts.append(f"<p><b>Total: {sub.total:g} / {sub.max_total:g} points</b></p><table>"
                 "<tr><th>test</th><th>points</th><th>result</th></tr>")
    for t in sub.tests:
        cls = "passed" if t.status == "passed" else "bad"
        parts.append(f"<tr><td><code>{esc(t.exercise)}_{esc(t.tier)}</code></td><td>"
                     f"{t.points:g} / {t.max_points:g}</td><td class='{cls}'>"
                     f"{esc(STATUS_TEXT.get(t.status, t.status))}</td></tr>")
    parts.append("</table>")
    for t in sub.tests:
        parts.append(f"<h2>{esc(t.exercise)} ({esc(t.tier)}): {t.points:g} / "
                     f"{t.max_points:g}</h2>")
        if t.message:
            parts.append(f"<p>{esc(t.message)}</p>")
        report = _verdict_text(t)
        if report:
            parts.append(f"<pre>{esc(report)}</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write_feedback(sub, folder: Path) -> tuple[Path, Path]:
    from .grade import _safe

    out = Path(folder) / _safe(sub.student)
    out.mkdir(parents=True, exist_ok=True)
    stem = _safe(Path(sub.notebook).stem)
    md, htm = out / f"{stem}.md", out / f"{stem}.html"
    md.write_text(render_markdown(sub))
    htm.write_text(render_html(sub))
    return md, htm
