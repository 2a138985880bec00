"""benchmarks/compare_runs.py: each row compares the same steps of every run, from dvclive's files."""
import pytest

from tests.helpers import load_benchmark


def log(run, metric, steps, value):
    path = run / "report" / "dvclive" / "plots" / "metrics" / f"{metric}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    name = metric.rsplit("/", 1)[-1]
    path.write_text("timestamp\tstep\t" + name + "\n" + "".join(f"0\t{s}\t{value(s)}\n" for s in steps))


def test_windows_compare_the_same_steps_and_mark_what_a_run_lacks(tmp_path, capsys, monkeypatch):
    compare = load_benchmark("compare_runs")
    long, short, other = tmp_path / "long", tmp_path / "short", tmp_path / "other" / "codec"
    log(long, "mel/loss", range(0, 250, 5), lambda s: s)
    log(short, "mel/loss", range(0, 150, 5), lambda s: 2 * s)
    log(other, "kl/loss", range(0, 250, 5), lambda s: 1.0)
    assert compare.logged(long, "mel/loss")[245] == 245 and compare.logged(other, "mel/loss") is None
    rows = compare.windowed([compare.logged(long, "mel/loss"), compare.logged(short, "mel/loss"), None], 100)
    assert [start for start, _ in rows] == [0, 100, 200]
    assert rows[0][1] == [pytest.approx(47.5), pytest.approx(95.0), None]   # steps 0..95 of both
    assert rows[1][1][1] is None and rows[1][1][0] == pytest.approx(147.5)  # short stopped at 145
    assert rows[2][1][0] == pytest.approx(222.5)                            # the last, partial window: 200..245

    monkeypatch.setattr("sys.argv", ["compare_runs.py", str(long), str(short), str(other), "--metric", "mel/loss", "nothing/here"])
    compare.main()
    out = capsys.readouterr().out
    assert "ratio to long" in out and "95.000 (2.000)" in out and out.count(" other") == 1
    assert "nothing/here: not logged by any run" in out


@pytest.mark.parametrize("runs, names", [
    (["r/nosem/codec", "r/xin/codec"], ["nosem", "xin"]),
    (["r/xin/fast", "r/xin_fm/fast"], ["xin", "xin_fm"]),
    (["a/long", "a/short", "a/other/codec"], ["long", "short", "other/codec"]),
    (["a/x/run", "b/x/run"], ["a/x", "b/x"]),
    (["a/run1", "b/run2"], ["run1", "run2"]),
])
def test_columns_are_named_by_what_tells_the_runs_apart(tmp_path, runs, names):
    compare = load_benchmark("compare_runs")
    assert compare.run_names([tmp_path / r for r in runs]) == names
