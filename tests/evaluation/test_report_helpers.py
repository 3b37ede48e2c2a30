"""The small report helpers studies share: a Markdown table, accuracy cells, Figure 7's plot."""

from __future__ import annotations

from btnet.evaluation.plots import plot_coupling_points
from btnet.evaluation.report import accuracy_cells, markdown_table
from btnet.evaluation.verification import VerificationResult


def test_markdown_table_and_accuracy_cells():
    results = [VerificationResult("BTNet", "set", "56&14", 56, 14, 0.91234, 0.0105),
               VerificationResult("phi_hr", "set", "56&14", 56, 14, 0.5, 0.0)]
    cells = accuracy_cells(results, "BTNet", ["56&14", "14&14"])
    assert cells == ["91.23 ± 1.05", "–"]
    table = markdown_table(["model", "56&14", "14&14"], [["BTNet", *cells], ["x", 1, None]])
    assert table.split("\n") == ["| model | 56&14 | 14&14 |", "|---|---|---|",
                                 "| BTNet | 91.23 ± 1.05 | – |", "| x | 1 | None |"]


def test_coupling_plot_writes_a_png(tmp_path):
    points = [{"r": 7, "unit": u, "offset": i, "stored_params": 1e5 * (i + 1),
               "accuracy": {"56&7": 0.8 + 0.01 * i}} for i, u in enumerate(("s2", "s3"))]
    path = plot_coupling_points(points, 56, tmp_path / "f" / "figure7.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
