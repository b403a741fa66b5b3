"""S2S-ZEST emotion style transfer (thesis Fig. 5.5): source speech + emotional reference -> converted speech.

Source -> content tokens t (tokenizer), de-duplicated into t' with durations d; x-vector -> speaker embedding s.
Reference -> emotion frames E_ref and utterance embedding e-bar_ref. Then

* d-hat = Dpred(t', s, e-bar_ref), rounded and clamped to within +-40 % of d (thesis; ``transfer.duration_clamp:
  min1`` = the reference code's only-at-least-1 clamp), every unit >= 1 frame;
* t_conv = dup(t', d-hat);
* f-hat_conv = F0pred(C_conv, s + E_ref): the reference's emotion frames are **linearly interpolated in time to
  len(t_conv)** before s is added (the F0 predictor sees one conditioning frame per output frame, as in
  training, where E and the tokens come from the same utterance);
* ``transfer.f0_level: source`` (an emotk option; the thesis default is ``predicted``) rescales the voiced frames
  of f-hat_conv by the predictor's level error on the source itself: exp(mean log F0 of the source's track -
  mean log F0 of the predictor's reconstruction of the source, i.e. the source's tokens with its own s + E). The
  contour shape and the shift the reference causes are kept; a small or briefly trained predictor (an L1 loss
  with unvoiced zeros pulls voiced predictions down) no longer drags every output below the speaker's range;
* the waveform comes from a pluggable synthesiser: ``world`` (WORLD re-synthesis of the source with the new
  durations and F0, :func:`emotk.features.world_synth.world_synthesize`) or ``bigvgan`` (the S2S-ZEST
  vocoder, inputs t_conv, f-hat_conv, s, e-bar_ref).

:func:`transfer_batch` runs a pairs JSONL file (``--shard i/N`` for SLURM arrays, ``--resume`` after a kill):
each output is written atomically, then a record is appended to the shard's journal (``transfer.jsonl`` /
``transfer.shard-i-of-N.jsonl``, :mod:`emotk.core.journal`); a resumed run skips the pairs whose record says
``ok`` and whose output exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotk.core.audio import HOP, SAMPLE_RATE
from emotk.core.names import safe_name
from emotk.errors import AudioError, DataError, EmotkError, OutputExistsError, UsageError

log = logging.getLogger("emotk.zest")

MIN_SECONDS = 0.25  # shortest usable source / reference
SILENCE_PEAK = 1e-4  # peak |amplitude| below which an input counts as silent (-80 dBFS)
SYNTHS = ("world", "bigvgan")


@dataclass
class SourceAnalysis:
    """wav (N,) 16 kHz; tokens (T,); units t' (U,); durations d (U,); speaker_embedding s (128,); f0 (T,) Hz."""

    wav: np.ndarray
    tokens: np.ndarray
    units: np.ndarray
    durations: np.ndarray
    speaker_embedding: np.ndarray
    f0: np.ndarray
    f0_tracked: bool = True  # False: ``f0`` is zeros (analysed without F0)
    f0_level_factor: float | None = None  # cached by :func:`f0_level_factor`


@dataclass
class ReferenceAnalysis:
    """emotion_frames E_ref (T_r, 128); emotion_embedding e-bar_ref (128,); emotion_probs (C,) of the head."""

    emotion_frames: np.ndarray
    emotion_embedding: np.ndarray
    emotion_probs: np.ndarray


@dataclass
class Conversion:
    """predicted (U,) fractional frames before the clamp; durations d-hat (U,) int; tokens t_conv (sum d-hat,);
    f0 f-hat_conv (sum d-hat,) Hz."""

    predicted: np.ndarray
    durations: np.ndarray
    tokens: np.ndarray
    f0: np.ndarray


def check_input(wav: np.ndarray, what: str) -> np.ndarray:
    """Raise AudioError for audio that is too short or silent; return it as float32."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"{what}: expected mono audio, got shape {wav.shape}")
    if wav.size < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError(f"{what}: too short for emotion transfer ({wav.size / SAMPLE_RATE * 1000:.0f} ms < "
                         f"{MIN_SECONDS * 1000:.0f} ms)")
    if not np.isfinite(wav).all():
        raise AudioError(f"{what}: audio contains NaN or infinite samples")
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError(f"{what}: audio is silent (peak below -80 dBFS)")
    return wav


def read_input(path: str | os.PathLike, what: str) -> np.ndarray:
    """Any format/rate/channel count soundfile reads -> checked mono 16 kHz float32 (AudioError otherwise)."""
    from emotk.data.audio import load_audio

    return check_input(load_audio(path, sr=SAMPLE_RATE, min_duration=0.0), f"{what} {path}")


def analyse_source(bundle: Any, wav: np.ndarray, f0: bool = True) -> SourceAnalysis:
    """Content tokens, their de-duplication, s and (optionally) the YAAPT F0 of a 16 kHz source waveform.

    ``f0=False`` skips the F0 track when the caller has no use for it, unless the bundle's own conversion needs
    it (``transfer.f0_level: source``)."""
    f0 = f0 or bundle.config.transfer.f0_level == "source"
    import torch

    from emotk.features.f0 import F0Config, extract_f0
    from emotk.features.frames import num_frames
    from emotk.features.tokens import dedup
    from emotk.models.zest.data import content_tokens

    wav = wav[: num_frames(len(wav)) * HOP]
    tokens = content_tokens([wav], bundle.tokenizer, bundle.content_frames())[0]
    units, durations = dedup(tokens)
    xvec = bundle.xvectors().batch([wav])
    with torch.inference_mode():
        s = bundle.speaker.embed(torch.from_numpy(xvec).to(bundle.device))[0].float().cpu().numpy()
    c = bundle.config.f0
    track = extract_f0(wav, SAMPLE_RATE, F0Config(backend=c.backend, alignment=c.alignment)) if f0 else \
        np.zeros(len(tokens), np.float32)
    return SourceAnalysis(wav, tokens, units, durations, s, track, f0_tracked=f0)


def analyse_reference(bundle: Any, wav: np.ndarray) -> ReferenceAnalysis:
    """E_ref, e-bar_ref and the emotion head's probabilities of a 16 kHz reference waveform."""
    import torch

    from emotk.features.frames import num_frames

    n = num_frames(len(wav))
    x = torch.from_numpy(np.ascontiguousarray(wav[: n * HOP]))[None].to(bundle.device)
    with torch.inference_mode():
        out = bundle.analysis.emotion(x, torch.tensor([x.shape[1]]), torch.tensor([n]))
        probs = out["emotion_logits"].softmax(-1)[0]
    return ReferenceAnalysis(out["emotion_frames"][0].float().cpu().numpy(),
                             out["emotion_embedding"][0].float().cpu().numpy(), probs.float().cpu().numpy())


def interpolate_frames(frames: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of (T, D) frames to (length, D) (end points kept; a single frame is repeated)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).T[None]  # (1, D, T)
    if x.shape[-1] == 1:
        return np.repeat(frames[:1], length, axis=0).astype(np.float32)
    y = torch.nn.functional.interpolate(x, size=int(length), mode="linear", align_corners=True)
    return y[0].T.contiguous().numpy()


def _predict_f0(bundle: Any, tokens: np.ndarray, emotion_frames: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    """F0 predictor output (T,) Hz for tokens (T,) conditioned on s + E (E interpolated to T frames)."""
    import torch

    dev = bundle.device
    cond = interpolate_frames(emotion_frames, len(tokens)) + speaker[None]
    with torch.inference_mode():
        tok = torch.from_numpy(np.ascontiguousarray(tokens))[None].to(dev)
        mask = torch.ones_like(tok, dtype=torch.bool)
        f0 = bundle.analysis.f0_predictor.predict_hz(tok, mask, torch.from_numpy(cond)[None].to(dev), mask)
    return f0[0].float().cpu().numpy()


MIN_LEVEL_FRAMES = 5  # frames voiced in both the source track and its reconstruction needed to estimate a level


def f0_level_factor(bundle: Any, source: SourceAnalysis, own: ReferenceAnalysis | None = None) -> float:
    """exp(mean log F0 of the source track - mean log F0 of the predictor's reconstruction of the source), over
    the frames voiced (>= the 60 Hz floor) in both; 1.0 when fewer than 5 such frames. ``own``: the source's own
    emotion analysis (computed when None). Cached on ``source``."""
    if source.f0_level_factor is None:
        from emotk.features.f0 import F0Config

        if not source.f0_tracked:
            raise EmotkError("transfer.f0_level=source needs the source's F0 track: analyse_source(..., f0=True)")

        own = own if own is not None else analyse_reference(bundle, source.wav)
        recon = _predict_f0(bundle, source.tokens, own.emotion_frames, source.speaker_embedding)
        floor = F0Config().f0_floor
        track = np.asarray(source.f0, dtype=np.float64)
        both = (track >= floor) & (recon >= floor)
        factor = 1.0
        if both.sum() >= MIN_LEVEL_FRAMES:
            factor = float(np.exp(np.log(track[both]).mean() - np.log(recon[both].astype(np.float64)).mean()))
        source.f0_level_factor = factor
    return source.f0_level_factor


def convert(bundle: Any, source: SourceAnalysis, reference: ReferenceAnalysis,
            duration_predictor: bool = True, f0_level: str | None = None) -> Conversion:
    """Predict and clamp the durations, expand the tokens and predict the F0 contour (see the module doc).

    ``duration_predictor=False`` is the thesis's "without duration predictor" ablation: the source durations d
    are kept (``predicted`` then holds them too) and only the F0 contour is converted. With
    ``transfer.f0_level: source`` (or ``f0_level="source"``, which overrides the bundle's setting) the voiced
    predicted frames are scaled by :func:`f0_level_factor`.
    """
    import torch

    from emotk.features.tokens import dup
    from emotk.models.zest.duration import clamp_durations

    model, dev, t = bundle.analysis, bundle.device, bundle.config.transfer
    s = torch.from_numpy(source.speaker_embedding)[None].to(dev)
    e_bar = torch.from_numpy(reference.emotion_embedding)[None].to(dev)
    units = torch.from_numpy(source.units)[None].to(dev)
    if duration_predictor:
        with torch.inference_mode():
            raw = model.duration_predictor(units, torch.ones_like(units, dtype=torch.bool), s, e_bar)
            predicted = model.duration_predictor.to_frames(raw)[0].float().cpu().numpy()
        durations = clamp_durations(predicted, source.durations, mode=t.duration_clamp, ratio=t.clamp_ratio)
    else:
        predicted = source.durations.astype(np.float32)
        durations = source.durations.astype(np.int64).copy()
    tokens = dup(source.units, durations)
    f0 = _predict_f0(bundle, tokens, reference.emotion_frames, source.speaker_embedding)
    if (f0_level or t.f0_level) == "source":
        from emotk.features.f0 import F0Config

        voiced = f0 >= F0Config().f0_floor
        f0 = np.where(voiced, f0 * f0_level_factor(bundle, source), f0).astype(np.float32)
    return Conversion(predicted, durations, tokens, f0)


_VOCODERS: dict[tuple[str, str], Any] = {}


def synthesise(bundle: Any, source: SourceAnalysis, reference: ReferenceAnalysis, conv: Conversion,
               synth: str) -> np.ndarray:
    """Waveform (N',) float32 16 kHz of the conversion with synthesiser ``world`` or ``bigvgan``.

    WORLD needs a voicing decision: predicted F0 below the trackers' floor (60 Hz; an L1 predictor trained with
    unvoiced zeros outputs small values where the target is unvoiced) is synthesised as unvoiced. BigVGAN gets
    f-hat as it is (thesis).
    """
    if synth == "world":
        from emotk.features.f0 import F0Config
        from emotk.features.world_synth import world_synthesize

        f0 = np.where(conv.f0 >= F0Config().f0_floor, conv.f0, 0.0)
        wav = world_synthesize(source.wav, SAMPLE_RATE, source.durations, conv.durations, f0)
    elif synth == "bigvgan":
        path = bundle.vocoder
        if not path:
            raise UsageError("synth bigvgan needs a vocoder: assemble the bundle with --vocoder EXPORT_DIR")
        from emotk.models.zest.vocoder.export import load_generator
        from emotk.models.zest.vocoder.infer import synthesize

        key = (str(path), bundle.device)
        if key not in _VOCODERS:
            _VOCODERS[key] = load_generator(path, expect_features={"num_tokens": int(bundle.tokenizer.n_clusters)},
                                            device=bundle.device)
        wav = synthesize(_VOCODERS[key], conv.tokens, conv.f0, source.speaker_embedding, reference.emotion_embedding)
    else:
        raise UsageError(f"unknown synthesiser {synth!r} (choose {' or '.join(SYNTHS)})")
    return np.asarray(wav, dtype=np.float32).reshape(-1)


def _voiced_mean(f0: np.ndarray, floor: float) -> float | None:
    v = np.asarray(f0, dtype=np.float64)
    v = v[v >= floor]
    return round(float(v.mean()), 2) if v.size else None


def transfer(bundle: Any, source_wav: np.ndarray, reference_wav: np.ndarray,
             synth: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Convert ``source_wav`` to the emotion of ``reference_wav`` (both mono 16 kHz float) -> (wav, log).

    log: durations before/after (frames per unit and totals), mean voiced F0 before (YAAPT of the source) and
    after (predicted), the reference's predicted emotion, the synthesiser and the output length.
    """
    from emotk.features.f0 import F0Config

    synth = synth or bundle.config.transfer.synth
    if synth not in SYNTHS:
        raise UsageError(f"unknown synthesiser {synth!r} (choose {' or '.join(SYNTHS)})")
    src = analyse_source(bundle, check_input(source_wav, "source"))
    ref = analyse_reference(bundle, check_input(reference_wav, "reference"))
    conv = convert(bundle, src, ref)
    wav = synthesise(bundle, src, ref, conv, synth)
    floor = F0Config().f0_floor
    top = int(np.argmax(ref.emotion_probs))
    info = {
        "synth": synth, "units": int(len(src.units)),
        "durations_before": src.durations.tolist(), "durations_after": conv.durations.tolist(),
        "frames_before": int(src.durations.sum()), "frames_after": int(conv.durations.sum()),
        "mean_f0_before": _voiced_mean(src.f0, floor), "mean_f0_after": _voiced_mean(conv.f0, floor),
        "f0_level": bundle.config.transfer.f0_level, "f0_level_factor": src.f0_level_factor,
        "reference_emotion": bundle.emotions[top], "reference_emotion_prob": round(float(ref.emotion_probs[top]), 4),
        "samples": int(wav.size), "seconds": round(wav.size / SAMPLE_RATE, 3),
    }
    return wav, info


def transfer_files(bundle: Any, src: str | os.PathLike, ref: str | os.PathLike, out: str | os.PathLike,
                   synth: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Read two audio files, transfer, write ``out`` atomically (16-bit WAV/FLAC by suffix); return the log."""
    from emotk.core.io import check_writable
    from emotk.data.audio import save_audio

    check_writable(out, overwrite)
    wav, info = transfer(bundle, read_input(src, "source"), read_input(ref, "reference"), synth)
    save_audio(out, wav, SAMPLE_RATE)
    return {"src": str(src), "ref": str(ref), "out": str(out), **info}


# ----------------------------------------------------------------------------------------------- batch
def read_pairs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Pairs JSONL: one ``{"src": PATH, "ref": PATH, "id"?: NAME}`` a line (paths relative to the file's folder).

    Returns dicts with absolute ``src``/``ref`` and a unique ``id`` (default: the 0-based line index, 6 digits).
    DataError names file:line for bad JSON, a missing key, an unsafe or duplicate id.
    """
    from emotk.data.manifest import iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file not found: {path}")
    pairs, seen = [], {}
    for lineno, rec, err in iter_jsonl(path):
        if err is not None:
            raise DataError(f"{path}:{lineno}: {err}")
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object")
        for key in ("src", "ref"):
            if not isinstance(rec.get(key), str) or not rec[key]:
                raise DataError(f"{path}:{lineno}: key '{key}' is missing (an audio path)")
        uid = str(rec.get("id", f"{len(pairs):06d}"))
        safe_name(uid, "key 'id':", f"{path}:{lineno}")  # <id>.wav: one path component
        if uid in seen:
            raise DataError(f"{path}:{lineno}: duplicate id '{uid}' (first on line {seen[uid]})")
        seen[uid] = lineno
        base = path.parent
        pairs.append({"id": uid, "src": str((base / rec["src"]).resolve()), "ref": str((base / rec["ref"]).resolve()),
                      "line": lineno})
    return pairs


JOURNAL_KIND = "transfer"


def finished_ids(out_dir: Path) -> set[str]:
    """Ids journalled ``ok`` in any shard's transfer journal of ``out_dir`` whose output file still exists."""
    from emotk.core.journal import read_journal
    from emotk.core.shard import shard_files

    done: set[str] = set()
    for path in shard_files(out_dir, JOURNAL_KIND):
        _, records = read_journal(path, JOURNAL_KIND)  # a line cut by a kill is skipped: that pair is redone
        done.update(str(r["id"]) for r in records
                    if r.get("status") == "ok" and (out_dir / str(r.get("out", ""))).is_file())
    return done


def check_batch(pairs_file: str | os.PathLike, out_dir: str | os.PathLike, *, shard: tuple[int, int] | None = None,
                resume: bool = False, overwrite: bool = False, fmt: str = "wav") -> list[dict[str, Any]]:
    """Everything :func:`transfer_batch` checks before converting, without a model: the pairs file (every line)
    and, unless ``resume``/``overwrite``, that no journal or output of this shard exists. Returns this shard's
    pairs (:func:`read_pairs`). Call it before loading a bundle, so a bad line fails in a second."""
    from emotk.core.io import check_writable
    from emotk.core.shard import select, shard_name

    pairs = select(read_pairs(pairs_file), shard)
    out_dir = Path(out_dir)
    if not resume and not overwrite:
        check_writable(out_dir / shard_name(JOURNAL_KIND, shard), False)
        for p in pairs:
            check_writable(out_dir / f"{p['id']}.{fmt}", False)
    return pairs


def transfer_batch(bundle: Any, pairs_file: str | os.PathLike, out_dir: str | os.PathLike, *,
                   shard: tuple[int, int] | None = None, resume: bool = False, overwrite: bool = False,
                   synth: str | None = None, skip_bad: bool = False, fmt: str = "wav",
                   transfer_fn: Callable[..., tuple[np.ndarray, dict]] | None = None) -> dict[str, Any]:
    """Transfer every pair of this shard into ``out_dir/<id>.<fmt>``; journal one record per pair.

    shard ``(i, N)``: pairs with index % N == i (:func:`emotk.core.shard.select`; None = all), journalled in
    ``out_dir/transfer[.shard-i-of-N].jsonl`` (:class:`emotk.core.journal.Journal`, kind ``transfer``).
    resume: skip pairs already finished (see :func:`finished_ids`); without it an existing journal or output is
    an OutputExistsError unless ``overwrite``. skip_bad: a bad input is journalled with status "error" and the
    batch goes on (else the AudioError stops it). Returns counts, the journal path and the skipped pairs.
    """
    from emotk.core.io import remove_stale_temps
    from emotk.core.journal import Journal
    from emotk.core.log import track
    from emotk.core.shard import shard_name
    from emotk.data.audio import save_audio

    i, n = shard or (0, 1)
    fn = transfer_fn or transfer
    out_dir = Path(out_dir)
    pairs = check_batch(pairs_file, out_dir, shard=shard, resume=resume, overwrite=overwrite, fmt=fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / shard_name(JOURNAL_KIND, shard)
    done = finished_ids(out_dir) if resume else set()
    remove_stale_temps(out_dir / f"{p['id']}.{fmt}" for p in pairs)  # this shard's outputs: a kill at the rename
    counts = {"ok": 0, "skipped_done": 0, "error": 0}
    errors = []
    with Journal.open(log_path, JOURNAL_KIND, {"shard": f"{i}/{n}"}, resume=resume, overwrite=overwrite) as journal:
        for p in track(pairs, "transfer", unit="pairs"):
            name = f"{p['id']}.{fmt}"
            if p["id"] in done:
                counts["skipped_done"] += 1
                continue
            try:
                wav, info = fn(bundle, read_input(p["src"], "source"), read_input(p["ref"], "reference"), synth)
            except AudioError as e:
                if not skip_bad:
                    raise
                counts["error"] += 1
                errors.append({"id": p["id"], "error": str(e)})
                journal.append({"id": p["id"], "status": "error", "error": str(e)})
                continue
            save_audio(out_dir / name, wav, SAMPLE_RATE)  # atomic: a kill never leaves half a file
            journal.append({"id": p["id"], "status": "ok", "out": name, "src": p["src"], "ref": p["ref"],
                            **{k: v for k, v in info.items() if k not in ("durations_before", "durations_after")}})
            counts["ok"] += 1
    return {"pairs": len(pairs), "shard": f"{i}/{n}", **counts, "log": str(log_path), "out_dir": str(out_dir),
            "errors": errors}


def export_vocoder_items(bundle: Any, manifest: Any, out_dir: str | os.PathLike,
                         resume: bool = False) -> dict[str, Any]:
    """Vocoder training items from a manifest: ``out_dir/<id>.npz`` with ``tokens`` (T,), ``f0`` (T,) Hz (YAAPT),
    ``speaker`` s, ``emotion`` e-bar of the utterance itself and ``wav`` (T·320,) (emotk.models.zest.vocoder.task).

    Each file is written atomically; ``resume`` keeps existing ones (else an existing file is an error).
    Returns counts and the folder.
    """
    from emotk.core.io import atomic_path, remove_stale_temps
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    m.require_audio("transfer")
    out_dir = Path(out_dir)
    for r, line in zip(m.records, m._lines()):  # every id becomes <id>.npz: check them all before writing any
        safe_name(str(r["id"]), "key 'id':", f"{m.path or 'manifest'}:{line}")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir / f"{r['id']}.npz" for r in m)  # a kill at the rename left these
    written = kept = 0
    for r in m:
        target = out_dir / f"{r['id']}.npz"
        if target.exists():
            if not resume:
                raise OutputExistsError(f"{target} already exists; pass --resume to keep existing items")
            kept += 1
            continue
        wav = check_input(load_audio(m.resolve_path(r), start=r.get("start"), end=r.get("end")), str(r["id"]))
        src = analyse_source(bundle, wav)
        ref = analyse_reference(bundle, src.wav)
        with atomic_path(target, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, tokens=src.tokens, f0=src.f0.astype(np.float32), speaker=src.speaker_embedding,
                         emotion=ref.emotion_embedding, wav=src.wav[: len(src.tokens) * HOP])
        written += 1
    return {"written": written, "kept": kept, "out_dir": str(out_dir)}


# ----------------------------------------------------------------------------------------------- evaluation protocol
# What emotk.eval needs from S2S-ZEST (emotk.eval.systems): a TransferSystem and an EmotionEmbedder.
DEFAULT_SYSTEM_NAME = "s2s-zest"


def bundle_tag(bundle: Any) -> str:
    """12 hex digits identifying the emotion encoder of a ZEST bundle: the start of the sha256 of its
    ``analysis.safetensors`` (recorded in bundle.json), else of the bundle.json content."""
    info = getattr(bundle, "info", None) or {}
    digest = (info.get("sha256") or {}).get("analysis.safetensors")
    if not digest:
        from emotk.core.io import sha256_json

        digest = sha256_json(info)
    return str(digest)[:12]


class ZestEmotionEmbedder:
    """The S2S-ZEST emotion encoder's utterance embedding e-bar (thesis 5.x), from a loaded bundle
    (:func:`emotk.models.zest.export.load_bundle`): an :class:`emotk.eval.systems.EmotionEmbedder`.
    Name: ``zest-emotion-encoder:<sha12 of the weights>``."""

    def __init__(self, bundle: Any) -> None:
        if not hasattr(bundle, "analysis"):
            raise UsageError(f"ZestEmotionEmbedder needs a loaded S2S-ZEST bundle, got {type(bundle).__name__}")
        self.bundle = bundle
        self.name = f"zest-emotion-encoder:{bundle_tag(bundle)}"

    def embed(self, wav: Any) -> np.ndarray:
        """16 kHz waveform (S >= 320 samples) -> e-bar (D,) float32 (D = the bundle's emotion dim, 128 full size)."""
        from emotk.features.speaker import check_wav

        wav = check_wav(wav, "emotion-similarity input", min_samples=HOP)
        return np.asarray(analyse_reference(self.bundle, wav).emotion_embedding, dtype=np.float32)

    def embed_batch(self, wavs: Any) -> np.ndarray:
        """N waveforms -> (N, D) float32 (one at a time)."""
        return np.stack([self.embed(w) for w in wavs])


def load_emotion_embedder(bundle_dir: str | os.PathLike, device: str = "cpu") -> ZestEmotionEmbedder:
    """The emotion encoder of the bundle in ``bundle_dir`` as an emotion embedder (DataError when it is none)."""
    from emotk.models.zest.export import load_bundle

    return ZestEmotionEmbedder(load_bundle(Path(os.path.expanduser(str(bundle_dir))), device=device))


class ZestTransferSystem:
    """A bundle as an :class:`emotk.eval.systems.TransferSystem`: ``convert(src_wav, ref_wav) -> (wav, info)``.

    Constructor options: ``synth`` (world | bigvgan; None = the bundle's ``transfer.synth``),
    ``duration_predictor`` (False = the thesis's "without duration predictor" ablation: source durations kept),
    ``f0_level`` (predicted | source; None = the bundle's ``transfer.f0_level``). Analyses of sources and
    references are kept in a small LRU keyed by the waveform's digest (sources and references recur across pairs);
    :meth:`variant` makes a system with other options that shares the bundle and that cache.
    info: ``frames_source``, ``frames_converted`` and, when computed, ``f0_level_factor``.
    """

    def __init__(self, bundle: Any, *, name: str = DEFAULT_SYSTEM_NAME, synth: str | None = None,
                 duration_predictor: bool = True, f0_level: str | None = None, cache_size: int = 256,
                 _cache: Any = None) -> None:
        from collections import OrderedDict

        self.bundle, self.name = bundle, name
        self.synth = synth or bundle.config.transfer.synth
        if self.synth not in SYNTHS:
            raise UsageError(f"unknown synthesiser {self.synth!r} (choose {' or '.join(SYNTHS)})")
        self.duration_predictor = bool(duration_predictor)
        self.f0_level = f0_level or bundle.config.transfer.f0_level
        self._cache = _cache if _cache is not None else OrderedDict()
        self._cache_size = int(cache_size)

    def variant(self, *, name: str, synth: str | None = None, duration_predictor: bool = True,
                f0_level: str | None = None) -> "ZestTransferSystem":
        """Another system of the same bundle (same loaded weights, same analysis cache)."""
        return ZestTransferSystem(self.bundle, name=name, synth=synth or self.synth,
                                  duration_predictor=duration_predictor, f0_level=f0_level or self.f0_level,
                                  cache_size=self._cache_size, _cache=self._cache)

    def _cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._cache[key] = make()
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def convert(self, src_wav: np.ndarray, ref_wav: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """(16 kHz mono float32 source, reference) -> (converted waveform, info)."""
        import hashlib

        def digest(wav: np.ndarray) -> str:
            return hashlib.blake2b(np.ascontiguousarray(wav, dtype=np.float32).tobytes(), digest_size=16).hexdigest()

        # the source's F0 track is made only when the conversion calibrates the predicted F0 level
        track = self.f0_level == "source"
        sa = self._cached(("source", digest(src_wav), track), lambda: analyse_source(self.bundle, src_wav, f0=track))
        ra = self._cached(("reference", digest(ref_wav)), lambda: analyse_reference(self.bundle, ref_wav))
        conv = convert(self.bundle, sa, ra, duration_predictor=self.duration_predictor, f0_level=self.f0_level)
        wav = synthesise(self.bundle, sa, ra, conv, self.synth)
        info: dict[str, Any] = {"frames_source": int(sa.durations.sum()), "frames_converted": int(conv.durations.sum())}
        if sa.f0_level_factor is not None:
            info["f0_level_factor"] = sa.f0_level_factor
        return wav, info


def load_transfer_system(bundle_dir: str | os.PathLike, *, name: str = DEFAULT_SYSTEM_NAME, device: str = "cpu",
                         synth: str | None = None, duration_predictor: bool = True, f0_level: str | None = None,
                         share_with: ZestTransferSystem | None = None) -> ZestTransferSystem:
    """The bundle in ``bundle_dir`` as a transfer system (options: see :class:`ZestTransferSystem`).

    ``share_with``: a system already loaded from the same folder; the new one is its :meth:`~ZestTransferSystem.
    variant` (no second copy of the weights).
    """
    if share_with is not None:
        return share_with.variant(name=name, synth=synth, duration_predictor=duration_predictor, f0_level=f0_level)
    from emotk.models.zest.export import load_bundle

    bundle = load_bundle(Path(os.path.expanduser(str(bundle_dir))), device=device)
    return ZestTransferSystem(bundle, name=name, synth=synth, duration_predictor=duration_predictor,
                              f0_level=f0_level)
