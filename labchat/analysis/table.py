"""A small list-of-dicts table that renders as text and as HTML in Jupyter."""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Table"]


class Table:
    """A small list-of-dicts table: ``.rows``, ``.columns``, text via ``str()``, HTML in Jupyter."""

    def __init__(self, rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None):
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]
        if columns is None:
            cols: list[str] = []
            for r in self.rows:
                cols.extend(k for k in r if k not in cols)
            columns = cols
        self.columns: list[str] = list(columns)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    def column(self, name: str) -> list[Any]:
        """All values of one column, in row order."""
        return [r.get(name) for r in self.rows]

    @staticmethod
    def _cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.6f}"
        if isinstance(v, (list, tuple)):
            return ", ".join(str(x) for x in v)
        return str(v)

    def __str__(self) -> str:
        cells = [[self._cell(r.get(c)) for c in self.columns] for r in self.rows]
        widths = [len(c) for c in self.columns]
        for row in cells:
            widths = [max(w, len(x)) for w, x in zip(widths, row, strict=False)]
        out = io.StringIO()
        out.write(
            "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=False)).rstrip()
            + "\n"
        )
        out.write("  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            out.write(
                "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=False)).rstrip() + "\n"
            )
        return out.getvalue().rstrip("\n")

    def __repr__(self) -> str:
        return f"<Table {len(self.rows)} rows x {len(self.columns)} columns>\n{self}"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(self._cell(r.get(c)))}</td>" for c in self.columns)
            + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
