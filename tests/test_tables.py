"""The Table 2 / Table 4 drivers' figures (experiments/tables.py)."""

import pytest

from experiments import tables


def summary(mean, within, accuracy):
    return {"mean": mean, "within": within, "realism": {"accuracy": accuracy,
                                                        "cross_entropy": 0.5}}


def test_gap_closed_is_the_share_of_the_synthetic_to_oracle_gap():
    assert tables.gap_closed(3.99, 3.23, 2.06) == pytest.approx(0.76 / 1.93)
    assert tables.gap_closed(4.0, 2.0, 2.0) == 1.0
    assert tables.gap_closed(4.0, 5.0, 2.0) == -0.5  # worse than synthetic


def test_the_hand_table_has_a_row_per_seed_their_mean_the_oracle_and_the_gap():
    within = lambda v: {"5": v, "7": v + 10, "10": v + 20}  # noqa: E731
    text = tables.table(tables.HAND, summary(6.0, within(10.0), 1.0),
                        {1: summary(5.0, within(20.0), 0.8), 2: summary(4.0, within(30.0), 0.6)},
                        oracle=summary(2.0, within(50.0), 0.5))
    lines = text.splitlines()
    assert lines[0] == ("| training set | SimGAN seed | mean error (px) | % all joints within "
                        "5 px | % all joints within 7 px | % all joints within 10 px | "
                        "realism accuracy | realism cross-entropy | gap closed |")
    assert lines[2] == "| synthetic | - | 6.00 | 10.0 | 20.0 | 30.0 | 100.0% | 0.500 | - |"
    assert lines[3] == "| refined | 1 | 5.00 | 20.0 | 30.0 | 40.0 | 80.0% | 0.500 | 25% |"
    assert lines[4] == "| refined | 2 | 4.00 | 30.0 | 40.0 | 50.0 | 60.0% | 0.500 | 50% |"
    assert lines[5] == ("| **refined, mean** | 2 seeds | 4.50 | 25.0 | 35.0 | 45.0 | 70.0% | "
                        "0.500 | 38% |")
    assert lines[6] == ("| oracle (labelled real) | - | 2.00 | 50.0 | 60.0 | 70.0 | 50.0% | "
                        "0.500 | 100% |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_without_an_oracle_the_gap_is_not_given():
    within = {"5": 70.0, "7": 80.0, "10": 90.0}
    text = tables.table(tables.GAZE, summary(4.0, within, 1.0), {3: summary(3.0, within, 0.9)})
    assert text.splitlines()[3].endswith("| 90.0% | 0.500 | - |")
    assert "oracle" not in text
