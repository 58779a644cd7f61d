"""The Table 2 / Table 4 drivers' figures (experiments/tables.py)."""

import os
import types

import pytest

from experiments import tables
from simgan_tf.training import run_lock


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


def test_several_realism_classifiers_show_their_mean_and_spread():
    within = {"5": 70.0, "7": 80.0, "10": 90.0}
    refined = summary(3.0, within, 0.754)
    refined["realism"].update(accuracies=[0.70, 0.75, 0.812], accuracy_sd=0.0561)
    lines = tables.table(tables.GAZE, summary(4.0, within, 1.0), {1: refined}).splitlines()
    assert lines[3] == "| refined | 1 | 3.00 | 70.0 | 80.0 | 90.0 | 75.4% ± 5.6 | 0.500 | - |"
    assert lines[2].endswith("| 100.0% | 0.500 | - |")  # one classifier: no spread
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def fake_protocol(monkeypatch, tmp_path, seen):
    """Replaces the simulator, training and evaluation of `tables.run` by stand-ins that
    record whether the work folder's lock is held while they run."""
    within = {"5": 70.0, "7": 80.0, "10": 90.0}

    def locked(work_dir):
        holder = run_lock.RunLock(work_dir).read()
        return holder is not None and holder.pid == os.getpid()

    def simulator_data(task, cache_dir):
        seen.append("simulator")
        return str(tmp_path / "simulator")

    def evaluate(task, data_dir, split, eval_dir, estimator_seed, eval_flags, log):
        seen.append((split, locked(os.path.dirname(eval_dir))))
        return summary(4.0, within, 1.0)

    def seed_run(task, seed, work_dir, data_dir, train_flags, estimator_seed, eval_flags):
        seen.append((seed, locked(work_dir)))
        return summary(3.0, within, 0.9)

    monkeypatch.setattr(tables, "simulator_data", simulator_data)
    monkeypatch.setattr(tables, "evaluate", evaluate)
    monkeypatch.setattr(tables, "seed_run", seed_run)
    monkeypatch.setattr(tables.common, "link_data", lambda *args: None)


def driver_args(work_dir):
    return types.SimpleNamespace(work_dir=str(work_dir), seeds=["1", "2"], cache_dir=None,
                                 train_flags="", eval_flags="", estimator_seed=0)


def test_the_driver_holds_its_work_folders_lock_while_it_runs(monkeypatch, tmp_path):
    seen = []
    fake_protocol(monkeypatch, tmp_path, seen)
    work_dir = tmp_path / "table"
    text = tables.run(tables.GAZE, driver_args(work_dir))
    assert seen == ["simulator", ("synthetic", True), (1, True), (2, True)]
    assert (work_dir / "table2.md").read_text() == text + "\n"
    assert (work_dir / "curves.png").stat().st_size > 0
    assert not (work_dir / run_lock.LOCK_FILE).exists()  # released at the end


def test_a_second_driver_on_the_same_work_folder_stops_before_doing_anything(
        monkeypatch, tmp_path):
    seen = []
    fake_protocol(monkeypatch, tmp_path, seen)
    work_dir = tmp_path / "table"
    first = run_lock.RunLock(str(work_dir)).acquire()  # a driver that is running
    try:
        with pytest.raises(run_lock.RunLockedError) as error:
            tables.run(tables.GAZE, driver_args(work_dir))
        assert f"{work_dir} is in use by another table driver: pid {os.getpid()}" in str(
            error.value)
        assert "use another --work_dir" in str(error.value)
        assert seen == []  # no data rendered, no seed trained or evaluated
        assert not (work_dir / "table2.md").exists()
    finally:
        first.release()
    tables.run(tables.GAZE, driver_args(work_dir))  # free again once the first one ended
    assert (work_dir / "table2.md").exists()
