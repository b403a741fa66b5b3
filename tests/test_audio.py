import numpy as np
import pytest
import soundfile as sf
from conftest import write_wav

from emotk.data.audio import audio_info, load_audio, resample, save_audio
from emotk.errors import AudioError


def test_load_resamples_and_downmixes(tmp_path):
    p = write_wav(tmp_path / "a.wav", seconds=1.0, sr=44100, channels=2)
    wav = load_audio(p, sr=16000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 1
    info = audio_info(p)
    assert info.sr == 44100 and info.channels == 2 and info.duration == pytest.approx(1.0)


def test_segment_reads_only_the_segment(tmp_path):
    p = write_wav(tmp_path / "a.flac", seconds=2.0, sr=16000)
    seg = load_audio(p, start=0.5, end=1.25)
    assert len(seg) == 12000
    full = load_audio(p)
    np.testing.assert_allclose(seg, full[8000:20000], atol=1e-6)


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.wav", "not found"),
        (lambda d: _write(d / "empty.wav", b""), "empty file"),
        (lambda d: _write(d / "junk.wav", b"RIFF1234WAVEjunkjunk" * 10), "cannot decode"),
        (lambda d: write_wav(d / "short.wav", seconds=0.01), "too short"),
    ],
)
def test_bad_audio_is_one_line_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=message) as e:
        load_audio(path)
    assert "\n" not in str(e.value)
    assert str(path) in str(e.value)


def test_nan_audio(tmp_path):
    x = np.zeros(16000, dtype=np.float32)
    x[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_segment_outside_file(tmp_path):
    p = write_wav(tmp_path / "a.wav", seconds=1.0)
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(p, start=2.0)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(p, start=0.0, end=3.0)


def test_save_roundtrip_and_resample_quality(tmp_path):
    t = np.arange(16000) / 16000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    save_audio(tmp_path / "x.wav", x)
    y = load_audio(tmp_path / "x.wav")
    np.testing.assert_allclose(x, y, atol=1e-4)
    up = resample(x, 16000, 48000)
    back = resample(up, 48000, 16000)
    assert np.abs(back[200:-200] - x[200:-200]).max() < 1e-3
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file
