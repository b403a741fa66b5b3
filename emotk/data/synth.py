"""The built-in demo corpus: a small, multi-speaker, emotional English corpus made offline with espeak-ng.

``synthesize(out_dir, SynthConfig())`` speaks every sentence of the config in every style by every speaker
(parallel pairs for style-transfer evaluation) plus short two-speaker dialogues (for ERC), then writes::

    out_dir/wavs/<id>.wav      16-bit mono at ``sr`` Hz
    out_dir/label_map.json     LabelMap "demo" (the style names)
    out_dir/synth.json         config hash, espeak-ng version, counts
    out_dir/manifest.jsonl     written last: a killed run never leaves a manifest pointing at missing audio

Each utterance is one espeak-ng call (voice variant + ``-p`` base pitch + ``-s`` rate, SSML ``<prosody pitch range>``)
followed by numpy post-processing: resampling, silence trimming, a spectral tilt (voice quality: tense > 0 dB/oct,
lax/breathy < 0), aspiration noise that follows the speech envelope, and an RMS level per style. Everything is
deterministic: the same config gives byte-identical wavs and manifest (noise comes from a generator seeded by
``seed`` and the utterance id). Style parameters are documented in ``configs/data/synth.yaml``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from emotk.core.config import config_hash
from emotk.core.io import atomic_write_json, sha256_bytes
from emotk.core.io import cache_dir as emotk_cache_dir
from emotk.core.log import Progress, get_logger
from emotk.data.audio import resample, save_audio
from emotk.data.labels import LabelMap
from emotk.data.manifest import Manifest
from emotk.errors import ConfigError, DataError, OutputExistsError

log = get_logger("synth")

TASK = "data.synth"
DATASET = "demo"
ESPEAK = "espeak-ng"
INSTALL_HINT = "install it with: sudo apt-get update && sudo apt-get install -y espeak-ng"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_VOICE_RE = re.compile(r"^[A-Za-z0-9_\-]+(\+[A-Za-z0-9_\-]+)?$")


# ---- configuration ------------------------------------------------------------------------------------------
@dataclass
class SpeakerSpec:
    """One synthetic speaker: an espeak-ng voice (language + variant) and its own pitch and rate."""

    name: str = "speaker"  # lower-case; the manifest speaker is "demo-<name>"
    voice: str = "en-us"  # espeak-ng voice, e.g. "en-us+m3" (language + variant from espeak-ng-data/voices/!v)
    gender: str = "male"  # male | female (manifest field)
    pitch: int = 50  # espeak-ng -p base pitch, 0..99
    rate: int = 165  # neutral speaking rate, words per minute (espeak-ng -s)


@dataclass
class StyleSpec:
    """One emotion style: prosody given to espeak-ng plus voice-quality post-processing."""

    name: str = "neutral"  # the manifest emotion label
    pitch: int = 0  # SSML <prosody pitch="+N%">: pitch level change, percent
    range: int = 100  # SSML <prosody range="N%">: pitch range, percent of the voice's
    rate: int = 100  # speaking rate, percent of the speaker's rate
    level: float = -23.0  # RMS level of the speech, dBFS (energy)
    tilt: float = 0.0  # spectral tilt above tilt_corner_hz, dB per octave (>0 tense/bright, <0 lax/dark)
    breath: float = 0.0  # aspiration noise, RMS ratio to the speech (breathy voice)
    ending: str = "."  # final punctuation given to espeak-ng (intonation); the manifest text is unchanged


@dataclass
class SentenceSpec:
    """A sentence that every speaker says in every style (parallel data)."""

    id: str = "s01"
    text: str = ""


@dataclass
class TurnSpec:
    speaker: str = ""  # a SpeakerSpec name
    emotion: str = "neutral"  # a StyleSpec name
    text: str = ""


@dataclass
class DialogueSpec:
    """A short scripted conversation; turn numbers start at 1 in list order."""

    id: str = "d01"
    turns: list[TurnSpec] = field(default_factory=list)


def _speakers() -> list[SpeakerSpec]:
    return [
        SpeakerSpec("alex", "en-us+m1", "male", 45, 165),
        SpeakerSpec("ben", "en-us+m3", "male", 25, 155),
        SpeakerSpec("chris", "en-us+m7", "male", 58, 172),
        SpeakerSpec("dana", "en-us+f2", "female", 40, 165),
        SpeakerSpec("emma", "en-us+f3", "female", 55, 158),
        SpeakerSpec("fiona", "en-us+f4", "female", 70, 176),
    ]


def _styles() -> list[StyleSpec]:
    return [
        StyleSpec("neutral", pitch=0, range=100, rate=100, level=-23.0, tilt=0.0, breath=0.0, ending="."),
        StyleSpec("happy", pitch=45, range=190, rate=110, level=-20.0, tilt=1.5, breath=0.0, ending="."),
        StyleSpec("sad", pitch=-20, range=45, rate=80, level=-29.0, tilt=-2.5, breath=0.03, ending="."),
        StyleSpec("angry", pitch=15, range=150, rate=122, level=-15.0, tilt=4.0, breath=0.0, ending="!"),
    ]


def _sentences() -> list[SentenceSpec]:
    texts = [
        "We will take the last train home.",
        "I left my phone on the kitchen table.",
        "We are going to the market tomorrow morning.",
        "She opened the window and looked outside.",
        "Our class begins in a few minutes.",
        "He painted the garden fence last summer.",
        "Please bring a warm coat with you.",
        "We moved into a bigger house last year.",
        "The old cat is sleeping on the sofa.",
        "I will call you after lunch today.",
    ]
    return [SentenceSpec(f"s{i:02d}", t) for i, t in enumerate(texts, 1)]


def _dialogues() -> list[DialogueSpec]:
    scripts = {
        "d01": [
            ("alex", "neutral", "Have you seen my keys anywhere?"),
            ("dana", "neutral", "I think they are on the kitchen table."),
            ("alex", "angry", "They are not there, I already looked twice!"),
            ("dana", "sad", "I am sorry, I really thought I saw them."),
            ("alex", "neutral", "Maybe I left them in the car."),
            ("dana", "happy", "Wait, here they are, under the newspaper!"),
            ("alex", "happy", "Great, thank you so much!"),
        ],
        "d02": [
            ("emma", "happy", "I passed the driving test this morning!"),
            ("ben", "happy", "That is wonderful news, well done!"),
            ("emma", "neutral", "The examiner said my parking was perfect."),
            ("ben", "sad", "I failed mine twice last year."),
            ("emma", "neutral", "You should try again next month."),
            ("ben", "neutral", "Maybe I will book a lesson first."),
            ("emma", "happy", "I can help you practice on Sunday."),
        ],
        "d03": [
            ("fiona", "sad", "Our flight has been cancelled again."),
            ("chris", "angry", "That is the third time this week!"),
            ("fiona", "neutral", "They offered us seats on the morning flight."),
            ("chris", "angry", "I do not want to sleep at the airport!"),
            ("fiona", "sad", "I know, I am very tired too."),
            ("chris", "neutral", "We should find a hotel near the station."),
            ("fiona", "happy", "Good idea, I will call them now."),
        ],
        "d04": [
            ("emma", "angry", "The neighbours played loud music all night!"),
            ("alex", "neutral", "Did you talk to them about it?"),
            ("emma", "angry", "I knocked on their door again and again!"),
            ("alex", "sad", "That sounds awful, you must be exhausted."),
            ("emma", "sad", "I hardly slept at all."),
            ("alex", "neutral", "You can rest in the guest room today."),
            ("emma", "happy", "Thank you, that would be lovely."),
        ],
        "d05": [
            ("dana", "happy", "Guess who called me this afternoon!"),
            ("ben", "neutral", "I have no idea, who was it?"),
            ("dana", "happy", "My old friend from school called!"),
            ("ben", "happy", "That is great, how is she doing?"),
            ("dana", "sad", "She lost her job last month."),
            ("ben", "sad", "Oh no, that is hard news."),
            ("dana", "neutral", "She is looking for work in the city."),
        ],
        "d06": [
            ("chris", "angry", "My laptop crashed and I lost everything!"),
            ("fiona", "neutral", "Did you save a copy of the report?"),
            ("chris", "sad", "No, I forgot to save it."),
            ("fiona", "neutral", "Let me check the backup folder."),
            ("fiona", "happy", "Good news, the file is still here!"),
            ("chris", "happy", "You saved my whole week!"),
            ("fiona", "neutral", "Remember to save your work more often."),
        ],
    }
    return [DialogueSpec(d, [TurnSpec(s, e, t) for s, e, t in turns]) for d, turns in scripts.items()]


@dataclass
class SynthConfig:
    """Everything that defines the demo corpus (task ``data.synth``; defaults = ``configs/data/synth.yaml``)."""

    speakers: list[SpeakerSpec] = field(default_factory=_speakers)
    styles: list[StyleSpec] = field(default_factory=_styles)
    sentences: list[SentenceSpec] = field(default_factory=_sentences)
    dialogues: list[DialogueSpec] = field(default_factory=_dialogues)
    sr: int = 16000  # output sample rate, Hz
    seed: int = 0  # seeds the aspiration noise
    tilt_corner_hz: float = 500.0  # the spectral tilt leaves frequencies below this untouched
    peak: float = 0.95  # peak limit after levelling (soft, tanh); full scale = 1
    trim_db: float = 40.0  # leading/trailing audio quieter than (max frame level - trim_db) is trimmed
    pad_s: float = 0.1  # silence kept before and after the speech after trimming, seconds

    def validate(self) -> None:
        """Raise ConfigError naming the key of the first inconsistency."""
        if self.sr < 8000:
            raise ConfigError(f"config key 'sr': {self.sr} Hz is too low (use >= 8000)")
        if not self.speakers or not self.styles:
            raise ConfigError("config keys 'speakers' and 'styles' must each list at least one entry")
        if not 0 < self.peak <= 1:
            raise ConfigError(f"config key 'peak': {self.peak} is not in (0, 1]")
        if self.trim_db <= 0 or self.pad_s < 0 or self.tilt_corner_hz <= 0:
            raise ConfigError("config keys 'trim_db', 'tilt_corner_hz' must be > 0 and 'pad_s' >= 0")
        for group, items in (("speakers", self.speakers), ("styles", self.styles), ("sentences", self.sentences),
                             ("dialogues", self.dialogues)):
            attr = "name" if group in ("speakers", "styles") else "id"
            seen: set[str] = set()
            for i, item in enumerate(items):
                value = getattr(item, attr)
                if not _NAME_RE.match(value):
                    raise ConfigError(f"config key '{group}[{i}].{attr}': {value!r} must be lower-case letters, "
                                      "digits or '_'")
                if value in seen:
                    raise ConfigError(f"config key '{group}[{i}].{attr}': duplicate {value!r}")
                seen.add(value)
        for i, sp in enumerate(self.speakers):
            if not _VOICE_RE.match(sp.voice):
                raise ConfigError(f"config key 'speakers[{i}].voice': {sp.voice!r} is not an espeak-ng voice name "
                                  "(e.g. en-us+m3)")
            if not 0 <= sp.pitch <= 99:
                raise ConfigError(f"config key 'speakers[{i}].pitch': {sp.pitch} is not in 0..99")
            if not 80 <= sp.rate <= 450:
                raise ConfigError(f"config key 'speakers[{i}].rate': {sp.rate} wpm is not in 80..450")
            if sp.gender not in ("male", "female"):
                raise ConfigError(f"config key 'speakers[{i}].gender': {sp.gender!r} is not male or female")
        for i, st in enumerate(self.styles):
            if not -90 <= st.pitch <= 300 or not 0 <= st.range <= 500 or not 30 <= st.rate <= 300:
                raise ConfigError(f"config key 'styles[{i}]': pitch must be in -90..300 %, range in 0..500 %, "
                                  "rate in 30..300 %")
            if st.breath < 0 or st.level > 0:
                raise ConfigError(f"config key 'styles[{i}]': breath must be >= 0 and level <= 0 dBFS")
            if st.ending not in (".", "!", "?"):
                raise ConfigError(f"config key 'styles[{i}].ending': {st.ending!r} is not one of '.', '!', '?'")
        for i, s in enumerate(self.sentences):
            if not s.text.strip():
                raise ConfigError(f"config key 'sentences[{i}].text': empty sentence")
        speakers, styles = {s.name for s in self.speakers}, {s.name for s in self.styles}
        for i, d in enumerate(self.dialogues):
            if not d.turns:
                raise ConfigError(f"config key 'dialogues[{i}].turns': a dialogue needs at least one turn")
            for j, t in enumerate(d.turns):
                key = f"dialogues[{i}].turns[{j}]"
                if t.speaker not in speakers:
                    raise ConfigError(f"config key '{key}.speaker': unknown speaker {t.speaker!r} "
                                      f"(speakers: {', '.join(sorted(speakers))})")
                if t.emotion not in styles:
                    raise ConfigError(f"config key '{key}.emotion': unknown style {t.emotion!r} "
                                      f"(styles: {', '.join(sorted(styles))})")
                if not t.text.strip():
                    raise ConfigError(f"config key '{key}.text': empty turn")

    @property
    def hash(self) -> str:
        return config_hash(self, TASK)


# ---- the utterance plan -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Utterance:
    """One line of the corpus before synthesis."""

    id: str
    speaker: SpeakerSpec
    style: StyleSpec
    text: str
    sentence: str | None = None
    dialogue: str | None = None
    turn: int | None = None


def plan(cfg: SynthConfig) -> list[Utterance]:
    """Every utterance of the corpus, sorted by id: speakers x styles x sentences, then dialogue turns."""
    speakers = {s.name: s for s in cfg.speakers}
    styles = {s.name: s for s in cfg.styles}
    out = [
        Utterance(f"{DATASET}-{sp.name}-{st.name}-{se.id}", sp, st, se.text.strip(), sentence=f"{DATASET}-{se.id}")
        for sp in cfg.speakers for st in cfg.styles for se in cfg.sentences
    ]
    for d in cfg.dialogues:
        for k, t in enumerate(d.turns, 1):
            out.append(Utterance(f"{DATASET}-{d.id}-t{k:02d}", speakers[t.speaker], styles[t.emotion],
                                 t.text.strip(), dialogue=f"{DATASET}-{d.id}", turn=k))
    ids = [u.id for u in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"two utterances get the id '{dup}': rename a sentence or dialogue id")
    return sorted(out, key=lambda u: u.id)


# ---- espeak-ng ----------------------------------------------------------------------------------------------
def espeak_version() -> str:
    """The installed espeak-ng version string (e.g. "1.51"); DataError naming the install command if missing."""
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise DataError(f"the demo corpus needs the '{ESPEAK}' program, which is not installed; {INSTALL_HINT}")
    try:
        text = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise DataError(f"cannot run {exe} --version ({e}); {INSTALL_HINT}") from None
    m = re.search(r"text-to-speech:\s*(\S+)", text)
    return m.group(1) if m else text.strip().splitlines()[0] if text.strip() else "unknown"


def check_voices(speakers: list[SpeakerSpec]) -> None:
    """DataError when espeak-ng ignores a speaker's voice variant (it does so silently for unknown variants and for
    some languages, e.g. "en-gb+f4"): the variant must change the audio of a probe sentence."""
    neutral = StyleSpec()
    plain: dict[str, bytes] = {}
    for i, sp in enumerate(speakers):
        if "+" not in sp.voice:
            continue
        language = sp.voice.split("+", 1)[0]
        with_variant = run_espeak("One two three.", sp, neutral)[0].tobytes()
        if language not in plain:
            plain[language] = run_espeak("One two three.", SpeakerSpec(sp.name, language, sp.gender, sp.pitch, sp.rate),
                                         neutral)[0].tobytes()
        if with_variant == plain[language]:
            raise DataError(f"config key 'speakers[{i}].voice': espeak-ng ignores the variant of {sp.voice!r} "
                            "(unknown variant, or one this language does not take: English works as en-us+VARIANT "
                            "or en+VARIANT); list variants with: espeak-ng --voices=variant")


def espeak_ssml(text: str, style: StyleSpec) -> str:
    """The SSML document given to espeak-ng for ``text`` spoken in ``style``."""
    spoken = text.rstrip(" .!?") + style.ending
    return (f'<speak><prosody pitch="{style.pitch:+d}%" range="{style.range:d}%">{escape(spoken)}'
            "</prosody></speak>")


def espeak_rate(speaker: SpeakerSpec, style: StyleSpec) -> int:
    """Words per minute for espeak-ng -s."""
    return int(min(450, max(80, round(speaker.rate * style.rate / 100))))


def run_espeak(text: str, speaker: SpeakerSpec, style: StyleSpec) -> tuple[np.ndarray, int]:
    """Speak ``text``; returns (samples (T,) float32 in [-1, 1], espeak-ng's sample rate in Hz)."""
    import soundfile as sf

    cmd = [ESPEAK, "-v", speaker.voice, "-p", str(speaker.pitch), "-s", str(espeak_rate(speaker, style)),
           "-m", "--stdout", espeak_ssml(text, style)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise DataError(f"the demo corpus needs the '{ESPEAK}' program, which is not installed; {INSTALL_HINT}") \
            from None
    except subprocess.TimeoutExpired:
        raise DataError(f"{ESPEAK} timed out on {text!r} (voice {speaker.voice})") from None
    err = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or len(proc.stdout) <= 44 or err:
        why = err.splitlines()[0] if err else f"exit code {proc.returncode}, {len(proc.stdout)} bytes"
        raise DataError(f"{ESPEAK} failed for voice {speaker.voice!r} on {text!r}: {why}")
    # On a pipe espeak-ng cannot patch the RIFF sizes; libsndfile reads the stream to its end regardless.
    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    wav = wav[:, 0]
    if wav.size == 0 or not np.any(wav):
        raise DataError(f"{ESPEAK} produced no audio for voice {speaker.voice!r} on {text!r}")
    return wav, int(sr)


# ---- post-processing ----------------------------------------------------------------------------------------
def _frame_db(wav: np.ndarray, frame: int) -> np.ndarray:
    n = max(1, wav.size // frame)
    frames = wav[: n * frame].reshape(n, frame) if wav.size >= frame else wav[None, :]
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def trim_silence(wav: np.ndarray, sr: int, trim_db: float, pad_s: float) -> np.ndarray:
    """Cut leading/trailing frames (10 ms) quieter than max - ``trim_db`` dB, keeping ``pad_s`` s either side."""
    frame = max(1, sr // 100)
    db = _frame_db(wav, frame)
    active = np.flatnonzero(db > db.max() - trim_db)
    pad = int(round(pad_s * sr))
    first = max(0, active[0] * frame - pad)
    last = min(wav.size, (active[-1] + 1) * frame + pad)
    return wav[first:last]


def spectral_tilt(wav: np.ndarray, sr: int, db_per_octave: float, corner_hz: float) -> np.ndarray:
    """Apply a gain of ``db_per_octave`` * log2(f / corner) dB above ``corner_hz`` (zero phase, one FFT)."""
    if db_per_octave == 0:
        return wav
    n = wav.size
    spec = np.fft.rfft(wav.astype(np.float64), n=n)
    freqs = np.fft.rfftfreq(n, d=1.0 / sr)
    gain_db = db_per_octave * np.log2(np.maximum(freqs, corner_hz) / corner_hz)
    return np.fft.irfft(spec * 10 ** (gain_db / 20), n=n).astype(np.float32)


def envelope(wav: np.ndarray, sr: int, smooth_s: float = 0.02) -> np.ndarray:
    """Amplitude envelope (T,): rectified signal smoothed by a moving average of ``smooth_s`` seconds."""
    k = max(1, int(smooth_s * sr))
    return np.convolve(np.abs(wav), np.ones(k) / k, mode="same").astype(np.float32)


def add_breath(wav: np.ndarray, sr: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Add aspiration noise (high-passed at 1 kHz, shaped by the speech envelope) at RMS ratio ``amount``."""
    if amount <= 0:
        return wav
    noise = rng.standard_normal(wav.size)
    spec = np.fft.rfft(noise)
    spec[np.fft.rfftfreq(wav.size, d=1.0 / sr) < 1000.0] = 0
    noise = np.fft.irfft(spec, n=wav.size) * envelope(wav, sr)
    scale = amount * _rms(wav) / max(_rms(noise), 1e-9)
    return (wav + scale * noise).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))) if x.size else 0.0


def set_level(wav: np.ndarray, sr: int, level_db: float, peak: float) -> np.ndarray:
    """Scale so that the RMS of the speech frames (within 30 dB of the loudest) is ``level_db`` dBFS,
    then soft-limit peaks above ``peak`` (tanh knee), so loud styles stay loud without clipping."""
    frame = max(1, sr // 100)
    db = _frame_db(wav, frame)
    speech = db > db.max() - 30
    rms = float(np.sqrt(np.mean(10 ** (db[speech] / 10))))
    out = wav * (10 ** (level_db / 20) / max(rms, 1e-9))
    knee = 0.5 * peak
    over = np.abs(out) > knee
    out[over] = np.sign(out[over]) * (knee + (peak - knee) * np.tanh((np.abs(out[over]) - knee) / (peak - knee)))
    return out.astype(np.float32)


def render(utt: Utterance, cfg: SynthConfig) -> np.ndarray:
    """Synthesise one utterance; returns (T,) float32 at ``cfg.sr`` Hz, deterministic for a given config."""
    wav, sr = run_espeak(utt.text, utt.speaker, utt.style)
    wav = resample(wav, sr, cfg.sr)
    wav = trim_silence(wav, cfg.sr, cfg.trim_db, cfg.pad_s)
    wav = spectral_tilt(wav, cfg.sr, utt.style.tilt, cfg.tilt_corner_hz)
    seed = int.from_bytes(bytes.fromhex(sha256_bytes(utt.id.encode("utf-8"))[:16]), "big")
    wav = add_breath(wav, cfg.sr, utt.style.breath, np.random.default_rng([cfg.seed, seed]))
    return set_level(wav, cfg.sr, utt.style.level, cfg.peak)


# ---- the corpus ---------------------------------------------------------------------------------------------
def _record(utt: Utterance, cfg: SynthConfig, n_samples: int) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": utt.id, "path": f"wavs/{utt.id}.wav", "dataset": DATASET, "sr": cfg.sr,
        "duration": round(n_samples / cfg.sr, 3), "speaker": f"{DATASET}-{utt.speaker.name}",
        "gender": utt.speaker.gender, "language": "en", "emotion": utt.style.name, "text": utt.text,
    }
    if utt.sentence is not None:
        rec["sentence"] = utt.sentence
    if utt.dialogue is not None:
        rec["dialogue"] = utt.dialogue
        rec["turn"] = utt.turn
    return rec


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _counts(records: list[dict[str, Any]], cfg: SynthConfig) -> dict[str, Any]:
    """Top-level sizes (same keys as a prepare summary: utterances, hours, speakers) plus a ``counts`` breakdown."""
    emotions = [r["emotion"] for r in records]
    return {
        "utterances": len(records),
        "hours": round(sum(r["duration"] for r in records) / 3600, 4),
        "speakers": len(cfg.speakers),
        "styles": len(cfg.styles),
        "counts": {
            "sentences": len(cfg.sentences),
            "parallel_utterances": sum(1 for r in records if "sentence" in r),
            "dialogues": len(cfg.dialogues),
            "dialogue_turns": sum(1 for r in records if "dialogue" in r),
            "emotion": {e: emotions.count(e) for e in sorted(set(emotions))},
        },
    }


def synthesize(out_dir: str | os.PathLike, cfg: SynthConfig | None = None, overwrite: bool = False,
               workers: int = 2) -> dict[str, Any]:
    """Build the demo corpus in ``out_dir`` (layout in the module docstring); returns the summary dict.

    A complete corpus of the same config (same hash in ``synth.json``) is reused at once (``cached``: true);
    a half-built one of the same config is resumed (finished wavs are kept). A different corpus, or a manifest
    this function did not write, is an OutputExistsError unless ``overwrite``. ``workers`` espeak-ng processes
    run at a time. Raises DataError when espeak-ng is missing or fails, ConfigError for a bad config.
    """
    cfg = cfg if cfg is not None else SynthConfig()
    cfg.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file; the demo corpus needs a folder (-o DIR)")
    digest = cfg.hash
    manifest_file, info_file, wav_dir = out / "manifest.jsonl", out / "synth.json", out / "wavs"
    previous = _read_json(info_file)
    same = previous is not None and previous.get("config_hash") == digest
    if same and not overwrite and previous.get("complete") and manifest_file.is_file():
        manifest = Manifest.load(manifest_file)
        if all(manifest.resolve_path(r).is_file() for r in manifest):
            log.info(f"demo corpus {out} is complete (config {digest[:12]}); nothing to do")
            return {**previous, "manifest": str(manifest_file), "cached": True, "seconds": 0.0}
    if not overwrite:
        if previous is not None and not same:
            other = str(previous.get("config_hash"))[:12]
            raise OutputExistsError(f"{out} holds a different demo corpus (config {other}, this one is "
                                    f"{digest[:12]}); pass --overwrite to replace it")
        if previous is None and (manifest_file.exists() or (wav_dir.is_dir() and any(wav_dir.iterdir()))):
            raise OutputExistsError(f"{out} already holds a manifest or wavs/ not made by 'emotk data synth'; "
                                    "pass --overwrite to replace them")
    version = espeak_version()
    check_voices(cfg.speakers)
    utts = plan(cfg)
    start = time.perf_counter()
    # The manifest goes first when replacing and comes back last: no manifest ever points at foreign audio.
    if manifest_file.exists():
        manifest_file.unlink()
    reuse = same and not overwrite
    wanted = {f"{u.id}.wav" for u in utts}
    if wav_dir.is_dir() and not reuse:
        for stale in wav_dir.glob("*.wav"):
            stale.unlink()
    elif wav_dir.is_dir():
        for stale in wav_dir.glob("*.wav"):
            if stale.name not in wanted:
                stale.unlink()
    wav_dir.mkdir(parents=True, exist_ok=True)
    base = {"dataset": DATASET, "task": TASK, "config_hash": digest, "espeak_ng_version": version, "sr": cfg.sr}
    atomic_write_json(info_file, {**base, "complete": False})

    def one(utt: Utterance) -> dict[str, Any]:
        path = wav_dir / f"{utt.id}.wav"
        if reuse and path.is_file():
            import soundfile as sf

            return _record(utt, cfg, sf.info(str(path)).frames)
        wav = render(utt, cfg)
        save_audio(path, wav, cfg.sr)
        return _record(utt, cfg, wav.size)

    records: list[dict[str, Any]] = []
    with Progress(len(utts), "synthesising demo corpus") as bar, ThreadPoolExecutor(max(1, workers)) as pool:
        for rec in pool.map(one, utts):
            records.append(rec)
            bar.advance()
    LabelMap(name=DATASET, classes=sorted({s.name for s in cfg.styles}), dataset=DATASET).save(out / "label_map.json")
    manifest = Manifest.from_records(records)
    text = manifest.to_jsonl()
    summary = {**base, "complete": True, "manifest_sha256": sha256_bytes(text.encode("utf-8")), **_counts(records, cfg)}
    atomic_write_json(info_file, summary)
    manifest.save(manifest_file)
    seconds = round(time.perf_counter() - start, 2)
    log.info(f"demo corpus: {len(records)} utterances in {seconds:.1f} s -> {manifest_file}")
    return {**summary, "manifest": str(manifest_file), "cached": False, "seconds": seconds}


def default_cache_dir() -> Path:
    """``$EMOTK_CACHE`` or ``~/.cache/emotk`` (:func:`emotk.core.io.cache_dir`)."""
    return emotk_cache_dir()


def ensure_demo_corpus(cache_dir: str | os.PathLike | None = None, cfg: SynthConfig | None = None,
                       workers: int = 2) -> Path:
    """Path of the demo corpus manifest under ``<cache>/demo-corpus/<config hash>/``, built on first use.

    Concurrent callers are serialised by a lock file, so two processes never build the same corpus at once.
    """
    cfg = cfg if cfg is not None else SynthConfig()
    cfg.validate()
    out = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out = out / "demo-corpus" / cfg.hash[:16]
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows has no advisory locks; the atomic writes still hold
        fcntl = None
    with open(out / ".lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        synthesize(out, cfg, workers=workers)
    return out / "manifest.jsonl"


