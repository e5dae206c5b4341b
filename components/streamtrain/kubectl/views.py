"""Output: a command's result as data (-o json|yaml) or as tables (-o table: rich on a terminal, plain text
otherwise, so that `| grep` and `| awk` see stable columns)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

MISSING = "—"  # a figure the components do not report (yet), or a pod that does not answer
FORMATS = ("table", "json", "yaml")


@dataclass(frozen=True)
class Section:
    title: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class View:
    """What a command shows: `data` for json/yaml, sections and lines for the table form."""

    data: dict[str, Any]
    sections: list[Section] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # "key: value" lines under the tables


def cell(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple | set):
        return ", ".join(cell(v) for v in value) if value else MISSING
    return str(value)


def render(view: View, output: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    if output == "json":
        out.write(json.dumps(view.data, indent=2, default=str) + "\n")
    elif output == "yaml":
        out.write(yaml.safe_dump(json.loads(json.dumps(view.data, default=str)), sort_keys=False))
    elif out.isatty():
        _rich(view, out)
    else:
        out.write(plain(view))


def plain(view: View) -> str:
    parts = []
    for section in view.sections:
        rows = [section.headers, *[[cell(v) for v in row] for row in section.rows]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(section.headers))]
        text = "\n".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)
        parts.append(f"{section.title.upper()}\n{text}\n" if section.title else f"{text}\n")
    if view.lines:
        parts.append("\n".join(view.lines) + "\n")
    return "\n".join(parts)


def _rich(view: View, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    for section in view.sections:
        table = Table(title=section.title or None, title_justify="left", title_style="bold")
        for header in section.headers:
            table.add_column(header)
        for row in section.rows:
            table.add_row(*[cell(v) for v in row])
        console.print(table)
    for line in view.lines:
        console.print(line, highlight=False)
