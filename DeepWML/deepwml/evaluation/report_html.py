"""Self-contained HTML: tables and PNG figures embedded, so one file can be mailed or archived."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
.note{color:#555;font-size:0.9em}
"""


def fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return html.escape(str(value))


def table_html(rows: list[dict], fields: list[str] | None = None) -> str:
    if not rows:
        return "<p class='note'>(no rows)</p>"
    fields = fields or list(rows[0])
    head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(f, ''))}</td>" for f in fields) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_tag(png: Path, caption: str = "") -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode()
    cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
    return f"<img alt='{html.escape(png.name)}' src='data:image/png;base64,{data}'>{cap}"


def html_page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n")
