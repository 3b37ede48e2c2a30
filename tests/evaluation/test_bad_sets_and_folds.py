"""The report states the fold count used; an empty .bin is an error naming the file."""

from __future__ import annotations

import pickle

import pytest

from btnet.evaluation.report import build_verification_report, render_markdown
from btnet.evaluation.verification import VerificationResult


def _cell(folds: list[float]) -> VerificationResult:
    mean = sum(folds) / len(folds)
    return VerificationResult("m", "set", "56&56", 56, 56, mean, 0.0,
                              metrics={"fold_accuracies": folds})


@pytest.mark.parametrize("folds, text", [([0.9, 0.8], "2-fold mean ± std"),
                                         ([0.9] * 10, "10-fold mean ± std")])
def test_report_states_the_number_of_folds(folds, text):
    md = render_markdown(build_verification_report([_cell(folds)], canonical=56))
    assert text in md


def test_empty_bin_is_an_error_in_inspect_and_eval(tmp_path, capsys):
    from btnet.cli.main import main

    path = tmp_path / "empty.bin"
    path.write_bytes(pickle.dumps(([], [])))
    assert main(["data", "inspect", str(path)]) == 2
    assert f"{path}: holds no pairs" in capsys.readouterr().err
    assert main(["eval", "verify", "--model", "builtin-unused", "--set", str(path),
                 "--out", str(tmp_path / "r"), "--no-plots", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: holds no pairs" in err
