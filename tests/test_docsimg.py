"""The README's ladder is what today's code draws from the reference capture (issue 12).

`make docs-img` (python -m labchat.docsimg) draws it; this test draws it again and compares the
labels kept in the committed PNG's metadata, so a change to the plotting code or the reference
capture without redrawing the picture fails here, with the command that fixes it.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from helpers import ROOT  # noqa: E402
from PIL import Image  # noqa: E402

from labchat.docsimg import LABELS_KEY, README_LADDER, figure_labels, ladder_tls13, main  # noqa: E402


def test_readme_ladder_is_not_stale() -> None:
    committed = json.loads(Image.open(ROOT / README_LADDER).text[LABELS_KEY])
    assert committed == figure_labels(ladder_tls13()), (
        f"{README_LADDER} was drawn by other code or from another capture: run `make docs-img`"
    )


def test_docs_img_draws_the_chat_lines_with_the_password_masked(tmp_path, capsys) -> None:
    assert main([str(tmp_path)]) == 0
    png = tmp_path / README_LADDER
    assert f"wrote {png}" in capsys.readouterr().out
    image = Image.open(png)
    assert image.format == "PNG" and image.size[0] > 500
    assert "Software" not in image.text  # no matplotlib version: same picture, same bytes
    labels = "\n".join(json.loads(image.text[LABELS_KEY]))
    assert "LOGIN alice ****" in labels and "correct horse" not in labels
    assert "MSG bob every word, alice" in labels and "BYE see you" in labels
    assert "ApplicationData" not in labels
    assert "FIN, ACK" in labels and "RST" not in labels  # the clean teardown of today's code
