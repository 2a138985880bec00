"""benchmarks/synthesis_speed.py's timing order and sandwiched ratios, on a simulated machine whose speed drifts."""

from tests.helpers import load_benchmark


def test_sandwiched_ratios_cancel_a_linear_drift(monkeypatch):
    bench = load_benchmark("synthesis_speed")
    calls = []

    def model(name, work):
        def run():
            calls.append(name)
            return work * (1.0 + 0.1 * len(calls))   # the machine slows down by 10 % per run
        return run

    monkeypatch.setattr(bench, "seconds", lambda fn: fn())
    fns = {"teacher": model("teacher", 64.0), "student": model("student", 1.0)}
    times = bench.sandwiched_times(fns, repeats=3, student_runs=1)
    assert calls == ["teacher", "student", "student", "teacher", "student", "teacher", "student", "teacher", "student"]
    assert len(times["teacher"]) == 3 and len(times["student"]) == 4
    ratios = bench.sandwich_ratios(times["teacher"], times["student"])
    assert all(abs(r - 64.0) < 1e-9 for r in ratios)
    # pairing each teacher run with the student block after it alone (the earlier design) does not
    assert all(abs(t / s - 64.0) > 1.0 for t, s in zip(times["teacher"], times["student"][1:]))


def test_students_alone_run_one_block_per_repeat(monkeypatch):
    bench = load_benchmark("synthesis_speed")
    monkeypatch.setattr(bench, "seconds", lambda fn: fn())
    times = bench.sandwiched_times({"student a": lambda: 1.0, "student b": lambda: 2.0}, repeats=5, student_runs=3)
    assert times == {"student a": [1.0] * 5, "student b": [2.0] * 5}
