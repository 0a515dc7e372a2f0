"""Where the lab's notebooks and reference captures are: in the wheel, or in a checkout.

A wheel carries them as package data under ``labchat/labdata/`` (pyproject.toml maps the
repository's top-level ``notebooks/`` and ``captures/`` there), so ``pip install labchat``
alone gives a working lab. In a source checkout (and an editable install) they are the
repository's own directories, next to the package.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["captures_dir", "notebooks_dir", "notebooks"]

_PACKAGE = Path(__file__).resolve().parent
_PACKAGE_DATA = _PACKAGE / "labdata"
_CHECKOUT = _PACKAGE.parent


def _find(name: str, marker: str) -> Path:
    """The first of labdata/<name> and <checkout>/<name> that holds `marker` files."""
    for base in (_PACKAGE_DATA, _CHECKOUT):
        candidate = base / name
        if any(candidate.glob(marker)):
            return candidate
    # Nothing found: name the wheel's place, the one an installed labchat should have.
    return _PACKAGE_DATA / name


def notebooks_dir() -> Path:
    """The directory of the lab notebooks (``NN-verb-topic.ipynb``)."""
    return _find("notebooks", "*.ipynb")


def notebooks() -> list[Path]:
    """The lab notebooks, in order."""
    return sorted(notebooks_dir().glob("[0-9][0-9]-*.ipynb"))


def captures_dir() -> Path:
    """The directory of the shipped reference captures (``<scenario>/capture.pcapng``)."""
    return _find("captures", "*/capture.pcapng")
