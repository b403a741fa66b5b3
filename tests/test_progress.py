"""emotk.core.log.Progress: a rich bar on a terminal, periodic log lines off one (a log file, a batch job)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from conftest import write_wav

import emotk.core.log as elog
from emotk.core.context import options
from emotk.core.log import Progress, format_duration, progress_interval, track
from emotk.errors import ConfigError


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(elog, "_clock", c)
    return c


@pytest.fixture
def lines(monkeypatch):
    """The messages logged by ``emotk.progress`` (INFO and up)."""
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    logger = logging.getLogger("emotk.progress")
    handler = Keep()
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    monkeypatch.delenv(elog.PROGRESS_INTERVAL_ENV, raising=False)
    monkeypatch.setattr(options, "verbosity", 0)
    yield got
    logger.removeHandler(handler)


def test_off_a_terminal_lines_come_soon_then_every_interval_and_at_the_end(monkeypatch, clock, lines):
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    with Progress(1440, "features", unit="utterances") as p:
        assert p.mode == "log" and p.interval == 30.0
        for _ in range(10):  # 8 utterances a second for 10 s
            clock.t += 1.0
            p.advance(8)
        assert len(lines) == 1  # the first line after 5 s, then nothing until 30 s later
        assert lines[0] == "features: 40/1440 utterances (3%), 8.0/s, ETA 2m55s"
        for _ in range(60):
            clock.t += 1.0
            p.advance(8)
        assert len(lines) == 3  # at 35 s and 65 s
        assert lines[1].startswith("features: 280/1440 utterances (19%), 8.0/s, ETA 2m25s")
    assert lines[-1] == "features: 560/1440 utterances (39%) done in 1m10s, 8.0/s"


def test_a_short_loop_logs_nothing_and_an_aborted_one_has_no_final_line(monkeypatch, clock, lines):
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    with Progress(10, "quick") as p:
        for _ in range(10):
            clock.t += 0.4
            p.advance()
    assert lines == []
    with pytest.raises(RuntimeError):
        with Progress(None, "label", unit="records") as p:
            clock.t += 6
            p.advance(3)
            raise RuntimeError("boom")
    assert lines == ["label: 3 records, 2.0s each"]  # no total: no percentage, no ETA; no "done" after the error


def test_on_a_terminal_the_bar_shows_and_no_lines_are_logged(monkeypatch, clock, lines):
    monkeypatch.setattr(sys, "stderr", Stream(tty=True))
    with Progress(100, "features", unit="utterances") as p:
        assert p.mode == "bar"
        for _ in range(100):
            clock.t += 1.0
            p.advance()
    assert lines == []


def test_quiet_disabled_and_env_interval(monkeypatch, clock, lines):
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    monkeypatch.setattr(options, "verbosity", -1)
    assert Progress(5, "x").mode is None  # -q: nothing
    monkeypatch.setattr(options, "verbosity", 0)
    assert Progress(5, "x", enabled=False).mode is None
    monkeypatch.setenv(elog.PROGRESS_INTERVAL_ENV, "2")
    assert progress_interval() == 2.0
    with Progress(100, "fast") as p:
        for _ in range(10):
            clock.t += 1.0
            p.advance()
    # first line at 2 s (min(5, interval)), then every 2 s, and the final line
    assert len(lines) == 6 and lines[-1].startswith("fast: 10/100 items (10%) done in 10s")
    for off in ("0", "off"):
        monkeypatch.setenv(elog.PROGRESS_INTERVAL_ENV, off)
        assert progress_interval() is None and Progress(5, "x").mode is None
    monkeypatch.setenv(elog.PROGRESS_INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match="EMOTK_PROGRESS_INTERVAL='soon'"):
        Progress(5, "x")


def test_track_counts_the_items_it_yields(monkeypatch, clock, lines):
    monkeypatch.setattr(sys, "stderr", Stream(tty=False))
    seen = []
    for item in track(["a", "b", "c"], "ser evaluate", unit="runs"):
        clock.t += 10
        seen.append(item)
    assert seen == ["a", "b", "c"]
    assert lines[0] == "ser evaluate: 1/3 runs (33%), 10.0s each, ETA 20s"
    assert lines[-1] == "ser evaluate: 3/3 runs (100%) done in 30s, 10.0s each"


def test_format_duration():
    assert [format_duration(s) for s in (0, 4.4, 59.6, 320, 3599, 7380)] == ["0s", "4s", "1m00s", "5m20s",
                                                                             "59m59s", "2h03m"]


def test_features_extract_off_a_terminal_logs_progress_lines(cli, tmp_path, monkeypatch):
    """The real CLI (stderr is not a terminal under the test runner): start line, progress lines, final line."""
    recs = []
    for i in range(6):
        write_wav(tmp_path / "wav" / f"t{i}.wav", seconds=0.3, freq=150 + 10 * i)
        recs.append({"id": f"syn-{i}", "path": f"wav/t{i}.wav", "dataset": "syn"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    monkeypatch.setenv(elog.PROGRESS_INTERVAL_ENV, "0.000001")  # a line at every step
    r = cli("features", "extract", "acoustic", "--data", tmp_path / "m.jsonl", "-o", tmp_path / "cache",
            "--batch-size", "2")
    assert r.code == 0, r.err
    assert re.search(r"features acoustic: extracting 6 utterance\(s\) into ", r.err), r.err
    steps = re.findall(r"features acoustic: (\d)/6 utterances \(\d+%\), [\d.]+/s", r.err)
    assert steps == ["2", "4", "6"], r.err
    assert re.search(r"features acoustic: 6/6 utterances \(100%\) done in ", r.err), r.err
    quiet = cli("-q", "features", "extract", "acoustic", "--data", tmp_path / "m.jsonl", "-o", tmp_path / "c2")
    assert quiet.code == 0 and "utterances" not in quiet.err, quiet.err
