"""The short soak: SIGKILL a train.py run twice at seeded random moments, resume, and
end with the weights of an uninterrupted run (`bench/soak.py`)."""

from bench import soak


def test_short_soak_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    result = soak.soak(str(tmp_path), updates=40, kills=2, seed=3, max_delay=1.0)
    print(soak.report(result, 40, 2, 3))
    assert result.missed == 0 and len(result.killed_at) == 2, result
    assert result.killed_at == sorted(result.killed_at) and result.killed_at[-1] < result.total
    # Both restarts took over the killed process's lock and resumed, each from a step at
    # or before the latest checkpoint on disk at its kill (that one unless cut short).
    assert result.takeovers == 2 and len(result.resumed_from) == 2, result
    assert all(0 < r <= k for r, k in zip(result.resumed_from, result.killed_at)), result
    assert result.tensors > 10 and result.different == [], result.different


def test_a_process_ended_by_a_signal_is_named_as_such():
    # A native crash of train.py (SIGSEGV, SIGABRT) reads differently from an exit status.
    assert soak._exit_status(-11) == "died of SIGSEGV (signal 11)"
    assert soak._exit_status(-6) == "died of SIGABRT (signal 6)"
    assert soak._exit_status(1) == "exited with 1"
