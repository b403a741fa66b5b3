"""ASR: normaliser + WER, resumable/sharded manifest transcription (fake backend), real faster-whisper tiny.en."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_ct2, write_wav

from emotk.errors import DataError, OutputExistsError, UsageError
from emotk.features.asr import make_backend, normalize_english, transcribe_manifest, word_error_rate


class FakeASR:
    """Transcribes a waveform as 'len <samples>'; can die (like a killed job) after some batches."""

    name = "fake"

    def __init__(self, model_id: str = "fake-1", die_after: int | None = None):
        self.model_id = model_id
        self.die_after = die_after
        self.calls: list[int] = []

    def transcribe(self, wavs):
        if self.die_after is not None and len(self.calls) >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls.append(len(wavs))
        return [{"text": f"len {len(w)}", "words": [{"word": "len", "start": 0.0, "end": 0.1}]} for w in wavs]


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    lines = []
    for i in range(7):
        write_wav(tmp_path / "audio" / f"a{i}.wav", seconds=0.2 + 0.02 * i)
        lines.append({"id": f"x-{i}", "path": f"audio/a{i}.wav", "dataset": "x", "text": f"len {3200 + 320 * i}"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return tmp_path / "m.jsonl"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- normaliser / WER -------------------------------------------------------------------------
def test_normalize_english():
    assert normalize_english("Kids're talking, by the DOOR!") == "kids are talking by the door"
    assert normalize_english("  Dogs   are sitting by the door. ") == "dogs are sitting by the door"
    assert normalize_english("") == ""


def test_word_error_rate_counts():
    res = word_error_rate(["a b c d"], ["a x c"], normalize=False)
    assert res["wer"] == pytest.approx(0.5) and res["substitutions"] == 1 and res["deletions"] == 1
    assert res["ref_words"] == 4 and res["utterances"] == 1
    assert word_error_rate(["Hello, World."], ["hello world"])["wer"] == 0.0
    res = word_error_rate(["red blue", ""], ["red blue green", "anything"])
    assert res["insertions"] == 1 and res["empty_references"] == 1 and res["wer"] == pytest.approx(0.5)
    with pytest.raises(DataError):
        word_error_rate(["a"], [])
    with pytest.raises(DataError):
        word_error_rate([""], ["a"])


# ---- transcribe_manifest ------------------------------------------------------------------------
def test_killed_run_resumes_where_it_stopped(manifest, tmp_path):
    out = tmp_path / "out" / "asr.jsonl"
    dying = FakeASR(die_after=2)
    with pytest.raises(KeyboardInterrupt):
        transcribe_manifest(manifest, out, batch_size=2, asr=dying)
    partial = out.with_name("asr.jsonl.partial.jsonl")
    assert not out.exists() and partial.is_file()
    assert len(partial.read_text().splitlines()) == 1 + 4  # header + two batches of two
    fresh = FakeASR()
    s = transcribe_manifest(manifest, out, batch_size=2, asr=fresh)
    assert fresh.calls == [2, 1] and s["transcribed"] == 3 and s["already_done"] == 4 and s["complete"]
    assert not partial.exists()
    recs = _read(out)
    assert [r["id"] for r in recs] == [f"x-{i}" for i in range(7)]  # manifest order
    for i, r in enumerate(recs):
        assert r["asr_text"] == f"len {3200 + 320 * i}" and r["asr_words"][0]["word"] == "len"
        assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()  # out lives in another folder
    assert s["wer_vs_text"]["wer"] == 0.0 and s["wer_vs_text"]["utterances"] == 7
    with pytest.raises(OutputExistsError):
        transcribe_manifest(manifest, out, asr=FakeASR())
    again = transcribe_manifest(manifest, out, asr=FakeASR(), overwrite=True)
    assert again["transcribed"] == 7


def test_torn_progress_line_is_dropped_and_redone(manifest, tmp_path):
    out = tmp_path / "asr.jsonl"
    with pytest.raises(KeyboardInterrupt):
        transcribe_manifest(manifest, out, batch_size=3, asr=FakeASR(die_after=1))
    partial = out.with_name("asr.jsonl.partial.jsonl")
    with open(partial, "a") as f:
        f.write('{"id": "x-3", "asr_te')  # the writer died mid-line
    fake = FakeASR()
    s = transcribe_manifest(manifest, out, batch_size=3, asr=fake)
    assert s["already_done"] == 3 and sum(fake.calls) == 4 and s["complete"]
    assert all(r["path"].startswith("audio/") for r in _read(out))  # same folder: paths kept relative


def test_resume_rules(manifest, tmp_path):
    out = tmp_path / "asr.jsonl"
    with pytest.raises(KeyboardInterrupt):
        transcribe_manifest(manifest, out, batch_size=2, asr=FakeASR(die_after=1))
    with pytest.raises(OutputExistsError, match="--resume"):
        transcribe_manifest(manifest, out, asr=FakeASR(), resume=False)
    with pytest.raises(DataError, match="fake-1"):
        transcribe_manifest(manifest, out, asr=FakeASR(model_id="fake-2"))
    with pytest.raises(UsageError):
        transcribe_manifest(manifest, manifest, asr=FakeASR())


def test_shards_are_disjoint_and_the_last_one_writes_the_manifest(manifest, tmp_path):
    out = tmp_path / "asr.jsonl"
    fakes = [FakeASR(), FakeASR(), FakeASR()]
    summaries = [transcribe_manifest(manifest, out, shard=(i, 3), asr=fakes[i]) for i in range(3)]
    assert [s["complete"] for s in summaries] == [False, False, True]
    journals = [tmp_path / f"asr.jsonl.partial.shard-{i}-of-3.jsonl" for i in range(3)]
    assert [s["progress_file"] for s in summaries] == [str(p) for p in journals] and all(p.is_file() for p in journals)
    assert [s["utterances"] for s in summaries] == [3, 2, 2] and sum(sum(f.calls) for f in fakes) == 7
    assert [r["asr_text"] for r in _read(out)] == [f"len {3200 + 320 * i}" for i in range(7)]


def test_skip_bad_keeps_the_record_without_a_transcript(manifest, tmp_path):
    lines = manifest.read_text() + json.dumps({"id": "x-gone", "path": "audio/missing.wav", "dataset": "x"}) + "\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines)
    with pytest.raises(DataError, match="missing.wav"):
        transcribe_manifest(bad, tmp_path / "o1.jsonl", asr=FakeASR())
    s = transcribe_manifest(bad, tmp_path / "o2.jsonl", asr=FakeASR(), skip_bad=True, overwrite=True)
    assert s["skipped"] == ["x-gone"] and s["complete"]
    last = _read(tmp_path / "o2.jsonl")[-1]
    assert last["id"] == "x-gone" and "asr_text" not in last


def test_backend_errors():
    with pytest.raises(UsageError, match="unknown ASR backend"):
        make_backend("kaldi")
    with pytest.raises(UsageError, match="no option 'hf_mode'"):
        make_backend("faster-whisper", hf_mode="pipeline")


# ---- real model ----------------------------------------------------------------------------------
def _speech_clip(tmp_path: Path) -> tuple[Path, str]:
    """A real RAVDESS clip (shared data) or an espeak-ng utterance; skip when neither is available."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess"
    if (root / "manifest.jsonl").is_file():
        rec = json.loads((root / "manifest.jsonl").read_text().splitlines()[0])
        return root / rec["path"], rec["text"]
    if shutil.which("espeak-ng"):
        # a voice, rate and sentence that tiny.en transcribes exactly (espeak-ng 1.51)
        text = "I would like a cup of coffee with milk"
        wav = tmp_path / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us+m3", "-s", "140", "-w", str(wav), text], check=True,
                       capture_output=True)
        return wav, text
    pytest.skip("no speech clip: ../shared/data/ravdess and espeak-ng are both absent")


@pytest.mark.slow
@needs_ct2
def test_faster_whisper_tiny_en_transcribes_speech_through_the_cli_command(tmp_path):
    from typer.testing import CliRunner

    from emotk.cli.data import app  # the `emotk data` group: the command name is part of argv

    clip, text = _speech_clip(tmp_path)
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "s-1", "path": str(clip), "dataset": "s", "text": text}) + "\n")
    res = CliRunner().invoke(app, ["transcribe", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "asr.jsonl")])
    assert res.exit_code == 0, res.output
    rec = _read(tmp_path / "asr.jsonl")[0]
    assert word_error_rate([text], [rec["asr_text"]])["wer"] <= 0.2, rec["asr_text"]
    starts = [w["start"] for w in rec["asr_words"]]
    assert len(rec["asr_words"]) >= 4 and starts == sorted(starts)
    assert all(0.0 <= w["start"] <= w["end"] <= 10.0 for w in rec["asr_words"])
    assert np.isfinite(starts).all()


@pytest.mark.slow
@needs_ct2
def test_hf_whisper_backend_plumbing_with_a_tiny_random_model(manifest, tmp_path):
    """A random 1-layer Whisper (tokenizer borrowed from the bundled tiny.en): text comes back for every
    utterance through both the pipeline and batched generate; word timestamps need a real generation config."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    from emotk.features.asr import bundled_whisper_dir

    end = "<|endoftext|>"
    tok = WhisperTokenizerFast(tokenizer_file=str(bundled_whisper_dir() / "tokenizer.json"), bos_token=end,
                               eos_token=end, unk_token=end)
    eos = tok.convert_tokens_to_ids(end)
    cfg = WhisperConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_target_positions=32,
                        decoder_start_token_id=tok.convert_tokens_to_ids("<|startoftranscript|>"),
                        eos_token_id=eos, pad_token_id=eos, bos_token_id=eos)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config.max_length = 8
    model.save_pretrained(tmp_path / "hfw")
    WhisperProcessor(WhisperFeatureExtractor(), tok).save_pretrained(tmp_path / "hfw")
    for mode in ("pipeline", "generate"):
        s = transcribe_manifest(manifest, tmp_path / f"{mode}.jsonl", "hf-whisper", tmp_path / "hfw", batch_size=3,
                                hf_mode=mode, word_timestamps=False, beam_size=None)
        recs = _read(tmp_path / f"{mode}.jsonl")
        assert s["complete"] and len(recs) == 7
        assert all(isinstance(r["asr_text"], str) and "asr_words" not in r for r in recs)
    with pytest.raises(UsageError, match="--no-words"):
        make_backend("hf-whisper", tmp_path / "hfw")
