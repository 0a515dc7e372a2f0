"""The README's pictures, drawn from the shipped captures by today's code: ``make docs-img``.

A picture committed once goes stale when the code that drew it changes (issue 12: the README's
ladder still showed a teardown that had been fixed, and "ApplicationData" on every arrow). So
the picture is a function of two committed things, the reference capture and the plotting
code, and this module is that function::

    python -m labchat.docsimg            # writes docs/img/ladder-tls13.png

Each PNG carries the text of its labels in its metadata (``labchat-labels``); a test draws
the figure again and compares, so a change to either side without ``make docs-img`` fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LABELS_KEY", "README_LADDER", "figure_labels", "ladder_tls13", "main", "write_png"]

#: Where the README's ladder lives, relative to the repository.
README_LADDER = Path("docs") / "img" / "ladder-tls13.png"
#: The PNG text chunk holding the figure's labels (JSON list).
LABELS_KEY = "labchat-labels"
_DPI = 110


def ladder_tls13() -> Figure:
    """The ladder of alice's connection in the reference ``tls13-chat`` capture.

    The capture carries its key log, so the data arrows show the decrypted labchat/1 lines
    (``LOGIN alice ****``, ``MSG bob every word, alice``), passwords masked.
    """
    from . import analysis, capture, plots

    pcap = capture.reference_dir() / "tls13-chat" / "capture.pcapng"
    conn = analysis.load(pcap).connection(0)
    return plots.ladder(conn, title="labchat over TLS 1.3: TCP handshake, one TLS round trip, chat")


def figure_labels(fig: Figure) -> list[str]:
    """Every text drawn on the figure's axes, in drawing order (what the PNG's metadata holds)."""
    return [t.get_text() for ax in fig.axes for t in [ax.title, *ax.texts] if t.get_text()]


def write_png(fig: Figure, path: str | Path) -> Path:
    """Save *fig* as a PNG with its labels in the metadata, without the matplotlib version
    (so the same picture is the same file on every machine).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": None, LABELS_KEY: json.dumps(figure_labels(fig))}
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", metadata=metadata)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Write the README's pictures under the directory given (default: the current one)."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path()
    print(f"wrote {write_png(ladder_tls13(), root / README_LADDER)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
