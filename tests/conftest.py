"""Shared test fixtures. Tests never touch the network: the HF hub is forced offline."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run the real ``emotk`` entry point in-process: ``cli("data", "validate", path)`` -> CliResult."""
    from emotk.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

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
