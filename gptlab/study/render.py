"""The study report as Markdown (tables and figures as files, for pasting into LaTeX or
Markdown) and as one self-contained HTML page (figures inline as data: URIs, a table of contents
with working anchors). Both show the same `Section`s; every number goes through
`gptlab.study.findings.fmt`, so it reads the same in both and in the findings."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from gptlab.study.findings import fmt
from gptlab.study.stage import Section, Table


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return fmt(value)
    return str(value)


def markdown_table(table: Table) -> str:
    lines = [
        f"*{table.caption}*",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def markdown(title: str, intro: list[str], parts: list[tuple[str, Section, str]], closing: Section) -> str:
    """``parts``: (anchor, section, the stage folder relative to the study folder)."""
    out = [f"# {title}", "", *intro, "", "## Contents", ""]
    out += [f"- [{s.title}](#{anchor})" for anchor, s, _ in parts]
    out += ["- [Findings](#findings)", f"- [{closing.title}](#environment)", ""]
    for anchor, s, folder in parts:
        out += [f'<a id="{anchor}"></a>', "", f"## {s.title}", "", "### Method", ""]
        out += [f"- {what}: {cell(value)}" for what, value in s.method] + [""]
        for table in s.tables:
            out += [markdown_table(table), ""]
        for file, caption in s.figures:
            out += [f"![{caption}]({folder}/{file})", ""]
        out += [f"> {note}" for note in s.notes] + ([""] if s.notes else [])
    out += ['<a id="findings"></a>', "", "## Findings", ""]
    out += [f"- {f}" for _, s, _ in parts for f in s.findings] + [""]
    out += ['<a id="environment"></a>', "", f"## {closing.title}", ""]
    out += [f"- {what}: {cell(value)}" for what, value in closing.method] + [""]
    return "\n".join(out)


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>" for row in table.rows
    )
    return f"<table><caption>{html.escape(table.caption)}</caption><tr>{head}</tr>{body}</table>"


def method_table(rows: list[tuple[str, Any]]) -> str:
    return html_table(Table("", ["what", "value"], [[w, v] for w, v in rows]))


def html_document(
    title: str, intro: list[str], parts: list[tuple[str, Section, Path]], closing: Section
) -> str:
    """``parts``: (anchor, section, the stage folder on disk, to read figures from)."""
    from gptlab.report import html_page, image

    toc = [(anchor, s.title) for anchor, s, _ in parts] + [
        ("findings", "Findings"),
        ("environment", closing.title),
    ]
    body = ["".join(f"<p>{html.escape(p)}</p>" for p in intro), "<nav><h2>Contents</h2><ul>"]
    body += [f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in toc] + ["</ul></nav>"]
    for anchor, s, folder in parts:
        body += [
            f'<section id="{anchor}"><h2>{html.escape(s.title)}</h2><h3>Method</h3>',
            method_table(s.method),
        ]
        body += [html_table(t) for t in s.tables]
        for file, caption in s.figures:
            body += [
                f"<figure>{image((folder / file).read_bytes(), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            ]
        body += [f"<p><em>{html.escape(n)}</em></p>" for n in s.notes] + ["</section>"]
    items = "".join(f"<li>{html.escape(f)}</li>" for _, s, _ in parts for f in s.findings)
    body += [f'<section id="findings"><h2>Findings</h2><ul>{items}</ul></section>']
    body += [
        f'<section id="environment"><h2>{html.escape(closing.title)}</h2>',
        method_table(closing.method),
        "</section>",
    ]
    return html_page(title, "\n".join(body))
