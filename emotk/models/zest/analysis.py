"""S2S-ZEST analysis models and their training stages (METHODS.md §6).

* :class:`AnalysisModel` = emotion encoder + F0 predictor + duration predictor, trained jointly with
  L = lambda_e (CE_emo + CE_spk through the GRL) + lambda_f L1(F0) + lambda_d MSE(d) (thesis Eq. 5.7).
* :class:`SpeakerTask` / :class:`AnalysisTask`: the :class:`emotk.train.task.TrainTask` hooks of the two stages.
* :func:`prepare_corpus`: manifest -> per-utterance content tokens (a trained KMeansTokenizer), YAAPT F0 and
  ECAPA x-vectors, cached in ``<run>/cache/analysis.npz`` (keyed by the manifest, tokenizer and F0 settings).
* :func:`train_stage`: config + manifest -> a run directory with checkpoints and ``zest.json`` (what a bundle needs
  to rebuild the model: label lists, dimensions, the HuBERT config).

Every 50 Hz stream follows :mod:`emotk.features.frames`: an utterance of N samples has N // 320 token, F0 and
emotion frames.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emotk.errors import DataError, UsageError
from emotk.train.task import TrainTask

log = logging.getLogger("emotk.zest")

SPLIT_ALIASES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid",
                 "test": "test"}
CACHE_FORMAT = 1


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Utterance:
    """One prepared utterance: waveform (N,) float32 16 kHz, tokens (T,) int64, f0 (T,) Hz, x-vector (D,),
    speaker / emotion class indices and the split; T = N // 320."""

    id: str
    wav: np.ndarray
    tokens: np.ndarray
    f0: np.ndarray
    xvector: np.ndarray
    speaker: int
    emotion: int
    split: str


@dataclass
class Corpus:
    """Prepared utterances plus the sorted label lists they index."""

    items: list[Utterance]
    speakers: list[str]
    emotions: list[str]
    manifest_sha256: str
    xvector_dim: int

    def split(self, name: str) -> list[Utterance]:
        return [u for u in self.items if u.split == name]


def _split_of(rec: dict[str, Any], where: str, valid_ids: set[str]) -> str:
    raw = rec.get("split")
    if raw is None:
        return "valid" if rec["id"] in valid_ids else "train"
    key = str(raw).lower()
    if key not in SPLIT_ALIASES:
        raise DataError(f"{where}: key 'split': {raw!r} is not one of train, valid, test")
    return SPLIT_ALIASES[key]


def content_tokens(wavs: Sequence[np.ndarray], tokenizer: Any, frames_fn: Any) -> list[np.ndarray]:
    """16 kHz waveforms -> content tokens (N_i // 320,) int64 with ``frames_fn`` (a ContentFrames)."""
    return [tokenizer.tokenize(f, tokenizer.space) for f in frames_fn(list(wavs))]


def prepare_corpus(cfg: Any, manifest: Any, cache_dir: str | os.PathLike, device: str = "cpu",
                   tokenizer: Any = None, xvectors: Any = None) -> Corpus:
    """Load, tokenize and analyse every utterance of ``manifest`` (a path or Manifest) for ``cfg`` (ZestConfig).

    Records need ``cfg.data.speaker_field`` and ``cfg.data.emotion_field``; ``split`` (train/valid/test;
    absent = train, or valid for the seeded ``data.valid_fraction``). Tokens, F0 (YAAPT, thesis settings) and
    x-vectors are cached in ``cache_dir/analysis.npz``; the cache is reused only when its key matches.
    Raises DataError naming file:line:key for a missing label, or when the training split is empty.
    """
    from emotk.core.io import atomic_path, sha256_json
    from emotk.data.audio import load_audio
    from emotk.data.manifest import Manifest
    from emotk.features.f0 import F0Config, extract_f0
    from emotk.features.frames import num_frames
    from emotk.features.tokens import ContentFrames, select_training_ids
    from emotk.models.zest.speaker import XVectorExtractor

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    d = cfg.data
    tok = tokenizer or load_tokenizer(cfg.tokens.tokenizer, cfg.tokens.n_clusters)
    valid_ids: set[str] = set()
    if d.valid_fraction > 0:
        unsplit = sorted(r["id"] for r in m if r.get("split") is None)
        if unsplit:
            valid_ids = set(select_training_ids(unsplit, d.valid_fraction, cfg.train.seed))
    where = {r["id"]: f"{m.path or 'manifest'}:{m.line_numbers[i] if m.line_numbers else i + 1}"
             for i, r in enumerate(m)}
    for r in m:
        for key in (d.speaker_field, d.emotion_field):
            if r.get(key) in (None, ""):
                raise DataError(f"{where[r['id']]}: key '{key}' is missing (S2S-ZEST needs speaker and emotion labels)")
    splits = {r["id"]: _split_of(r, where[r["id"]], valid_ids) for r in m}
    train = [r for r in m if splits[r["id"]] == "train"]
    if not train:
        raise DataError(f"{m.path or 'manifest'}: no training utterances (check the 'split' field)")
    speakers = sorted({str(r[d.speaker_field]) for r in train})
    emotions = sorted({str(r[d.emotion_field]) for r in train})
    f0_cfg = F0Config(backend=cfg.f0.backend, alignment=cfg.f0.alignment)
    key = sha256_json({"format": CACHE_FORMAT, "manifest": m.sha256, "tokenizer": tok.meta,
                       "f0": dataclasses.asdict(f0_cfg), "ecapa": [cfg.speaker.ecapa, cfg.speaker.ecapa_path],
                       "max_seconds": d.max_seconds})
    cache = Path(cache_dir) / "analysis.npz"
    stored = _read_cache(cache, key)
    items: list[Utterance] = []
    new: dict[str, np.ndarray] = {}
    frames_fn = None
    for r in m:
        uid = r["id"]
        spk, emo = str(r[d.speaker_field]), str(r[d.emotion_field])
        split = splits[uid]
        if spk not in speakers or emo not in emotions:  # labels never seen in training cannot be classified
            if split == "train":
                raise DataError(f"{where[uid]}: unknown label")  # pragma: no cover - train defines the labels
            log.warning("%s: %s '%s' / %s '%s' not in the training split; skipped", where[uid], d.speaker_field, spk,
                        d.emotion_field, emo)
            continue
        try:
            wav = load_audio(m.resolve_path(r), start=r.get("start"), end=r.get("end"))
        except DataError as e:  # AudioError is a DataError
            raise type(e)(f"{where[uid]}: {e}") from None
        if d.max_seconds:
            wav = wav[: int(d.max_seconds * 16000)]
        if num_frames(len(wav)) < 2:
            raise DataError(f"{where[uid]}: audio too short for 50 Hz analysis ({len(wav)} samples)")
        wav = wav[: num_frames(len(wav)) * 320]
        if stored is not None and f"tokens/{uid}" in stored:
            tokens, f0, xvec = stored[f"tokens/{uid}"], stored[f"f0/{uid}"], stored[f"xvector/{uid}"]
        else:
            if frames_fn is None:
                frames_fn = ContentFrames(tok.space, device=device)
                xvectors = xvectors or XVectorExtractor(cfg.speaker.ecapa, cfg.speaker.ecapa_path, device=device)
            tokens = content_tokens([wav], tok, frames_fn)[0]
            f0 = extract_f0(wav, 16000, f0_cfg)
            xvec = xvectors.batch([wav])[0]
        new[f"tokens/{uid}"], new[f"f0/{uid}"], new[f"xvector/{uid}"] = tokens, f0, xvec
        n = num_frames(len(wav))
        if len(tokens) != n or len(f0) != n:
            raise DataError(f"{where[uid]}: {len(tokens)} tokens and {len(f0)} F0 frames for {n} frames")
        items.append(Utterance(uid, wav, tokens.astype(np.int64), f0.astype(np.float32), xvec.astype(np.float32),
                               speakers.index(spk), emotions.index(emo), split))
    if stored is None or any(k not in stored for k in new):
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, __key__=np.array(key), **{k.replace("/", "|"): v for k, v in new.items()})
    dim = int(items[0].xvector.shape[0])
    return Corpus(items, speakers, emotions, m.sha256, dim)


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["__key__"]) != key:
                return None
            return {k.replace("|", "/"): z[k] for k in z.files if k != "__key__"}
    except Exception:  # a broken cache is rebuilt
        return None


def load_tokenizer(path: str, n_clusters: int | None = None) -> Any:
    """Read the KMeansTokenizer file; DataError when absent or when its K differs from ``n_clusters``."""
    from emotk.features.tokens import KMeansTokenizer

    if not path:
        raise UsageError("tokens.tokenizer: no tokenizer file given (train one with `emotk features train-tokenizer` "
                         "and pass --set tokens.tokenizer=FILE)")
    tok = KMeansTokenizer.load(path)
    if n_clusters is not None and tok.n_clusters != n_clusters:
        raise DataError(f"{path}: tokenizer has K={tok.n_clusters} but tokens.n_clusters is {n_clusters}")
    return tok


# ----------------------------------------------------------------------------------------------- models
def build_speaker_model(cfg: Any, xvector_dim: int, num_speakers: int, num_emotions: int):
    """The :class:`SpeakerEncoder` of ``cfg.speaker``."""
    from emotk.models.zest.speaker import SpeakerEncoder

    s = cfg.speaker
    return SpeakerEncoder(xvector_dim, num_speakers, num_emotions, hidden=s.hidden, dim=s.dim, dropout=s.dropout,
                          adv_weight=s.adv_weight)


def build_analysis_model(cfg: Any, num_tokens: int, num_speakers: int, num_emotions: int,
                         hf_config: dict | None = None, normalize: bool | None = None, device: str = "cpu"):
    """The :class:`AnalysisModel` of ``cfg``: pretrained HuBERT from the hub, or (``hf_config``) a model of
    that shape with random weights (to load a bundle into). Returns (model, upstream description)."""
    from emotk.models.zest.emotion import build_upstream

    e = cfg.emotion
    up, desc = build_upstream(e.upstream, e.upstream_path, hf_config=hf_config, normalize=normalize,
                              freeze_cnn=e.freeze_cnn, device=device)
    return AnalysisModel(cfg, up, num_tokens, num_speakers, num_emotions), desc


class AnalysisModel(torch.nn.Module):
    """Emotion encoder + F0 predictor + duration predictor (one module, one checkpoint).

    forward(batch) -> dict with the emotion encoder outputs, ``f0`` (B, T) raw predictions and ``durations``
    (B, U) raw predictions; :meth:`losses` turns them into the joint loss.
    """

    def __init__(self, cfg: Any, upstream: Any, num_tokens: int, num_speakers: int, num_emotions: int) -> None:
        super().__init__()
        from emotk.models.zest.duration import DurationPredictor
        from emotk.models.zest.emotion import EmotionEncoder
        from emotk.models.zest.f0_predictor import F0Predictor

        e, f, du = cfg.emotion, cfg.f0_predictor, cfg.duration
        self.emotion = EmotionEncoder(upstream, num_emotions, num_speakers, dim=e.dim, kernel=e.kernel,
                                      layers=e.layers, adv_weight=e.adv_weight)
        self.f0_predictor = F0Predictor(num_tokens, cond_dim=e.dim, hidden=f.hidden, heads=f.heads, kernel=f.kernel,
                                        positional=f.positional, target=f.target, scale=f.scale)
        self.duration_predictor = DurationPredictor(num_tokens, speaker_dim=cfg.speaker.dim, emotion_dim=e.dim,
                                                    hidden=du.hidden, kernel=du.kernel, layers=du.layers,
                                                    dropout=du.dropout, target=du.target)
        self.weights = (cfg.loss.emotion, cfg.loss.f0, cfg.loss.duration)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        emo = self.emotion(batch["wav"], batch["wav_lengths"], batch["frames"])
        mask = emo["mask"]
        s = batch["speaker_embedding"]
        cond = s[:, None, :] + emo["emotion_frames"]
        f0 = self.f0_predictor(batch["tokens"], mask, cond, mask)
        dur = self.duration_predictor(batch["units"], batch["unit_mask"], s, emo["emotion_embedding"])
        return {**emo, "f0": f0, "durations": dur}

    def losses(self, out: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        """Joint loss and its parts: L1 on F0 in Hz over valid frames (unvoiced zeros included), MSE on the
        duration target over valid units, CE on emotion and on the GRL speaker adversary."""
        import torch.nn.functional as F

        from emotk.losses import masked_l1, masked_mse

        ce_emo = F.cross_entropy(out["emotion_logits"], batch["emotion"])
        ce_spk = F.cross_entropy(out["speaker_logits"], batch["speaker"])
        f0_hz = self.f0_predictor.to_hz(out["f0"])
        l_f0 = masked_l1(f0_hz, batch["f0"], out["mask"])
        target = self.duration_predictor.encode_target(batch["durations"])
        l_dur = masked_mse(out["durations"], target, batch["unit_mask"])
        we, wf, wd = self.weights
        loss = we * (ce_emo + ce_spk) + wf * l_f0 + wd * l_dur
        return {"loss": loss, "ce_emotion": ce_emo.detach(), "ce_speaker_adv": ce_spk.detach(),
                "f0_l1": l_f0.detach(), "duration_mse": l_dur.detach()}


# ----------------------------------------------------------------------------------------------- tasks
def collate_analysis(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Analysis items -> padded batch: wav (B, S), wav_lengths, frames (B,), tokens/f0 (B, T), units/durations
    (B, U) + unit_mask, speaker_embedding (B, 128), speaker / emotion (B,), ids."""
    import torch

    from emotk.features.tokens import dedup
    from emotk.nn.masks import lengths_to_mask, pad_sequences

    wav, wav_len = pad_sequences([torch.from_numpy(it["wav"]) for it in items])
    tokens, frames = pad_sequences([torch.from_numpy(it["tokens"]) for it in items])
    f0, _ = pad_sequences([torch.from_numpy(it["f0"]) for it in items])
    units, durs = zip(*(dedup(it["tokens"]) for it in items))
    units_t, unit_len = pad_sequences([torch.from_numpy(u) for u in units])
    durs_t, _ = pad_sequences([torch.from_numpy(x) for x in durs])
    return {"wav": wav.float(), "wav_lengths": wav_len, "frames": frames, "tokens": tokens.long(), "f0": f0.float(),
            "units": units_t.long(), "durations": durs_t.float(), "unit_mask": lengths_to_mask(unit_len, units_t.shape[1]),
            "speaker_embedding": torch.stack([torch.from_numpy(it["speaker_embedding"]) for it in items]).float(),
            "speaker": torch.tensor([it["speaker"] for it in items]), "emotion": torch.tensor([it["emotion"] for it in items]),
            "ids": [it["id"] for it in items]}


def _accuracy(logits: Any, labels: Any) -> float:
    return float((logits.argmax(-1) == labels).float().mean()) if len(labels) else 0.0


class SpeakerTask(TrainTask):
    """Speaker stage: x-vectors -> SpeakerEncoder; CE_spk + CE_emo through the GRL (scheduled coefficient).

    Validation metrics: ``loss`` (CE_spk), ``speaker_accuracy``, ``emotion_accuracy`` (of the adversary: lower
    means less emotion in s).
    """

    def __init__(self, cfg: Any, corpus: Corpus) -> None:
        self.cfg, self.corpus = cfg, corpus
        self._train = [self._item(u) for u in corpus.split("train")]
        self._valid = [self._item(u) for u in corpus.split("valid")] or None

    @staticmethod
    def _item(u: Utterance) -> dict[str, Any]:
        return {"id": u.id, "xvector": u.xvector, "speaker": u.speaker, "emotion": u.emotion}

    def build_model(self):
        return build_speaker_model(self.cfg, self.corpus.xvector_dim, len(self.corpus.speakers),
                                   len(self.corpus.emotions))

    def train_dataset(self):
        return self._train

    def valid_dataset(self):
        return self._valid

    def collate(self, items: list) -> dict[str, Any]:
        import torch

        return {"xvector": torch.from_numpy(np.stack([it["xvector"] for it in items])).float(),
                "speaker": torch.tensor([it["speaker"] for it in items]),
                "emotion": torch.tensor([it["emotion"] for it in items]), "ids": [it["id"] for it in items]}

    def training_step(self, model: Any, batch: dict[str, Any], state: Any) -> dict:
        from emotk.models.zest.speaker import speaker_losses

        model.grl.set_progress(state.progress, scale=model.adv_weight, gamma=self.cfg.speaker.grl_gamma)
        out = model(batch["xvector"])
        return {**speaker_losses(out, batch["speaker"], batch["emotion"]), "grl": model.grl.coefficient}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch["xvector"])
        return {"speaker_logits": out["speaker_logits"], "emotion_logits": out["emotion_logits"],
                "speaker": batch["speaker"], "emotion": batch["emotion"]}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        import torch.nn.functional as F

        return {"loss": float(F.cross_entropy(outputs["speaker_logits"].float(), outputs["speaker"])),
                "speaker_accuracy": _accuracy(outputs["speaker_logits"], outputs["speaker"]),
                "emotion_accuracy": _accuracy(outputs["emotion_logits"], outputs["emotion"])}


class AnalysisTask(TrainTask):
    """Analysis stage: emotion encoder + F0 + duration predictors, joint loss (thesis weights).

    speaker_embeddings: id -> s (128,) from the trained speaker stage (frozen). Validation metrics: ``loss``
    (the joint loss), ``emotion_accuracy``, ``f0_l1`` (Hz), ``duration_mse`` (target domain).
    """

    def __init__(self, cfg: Any, corpus: Corpus, speaker_embeddings: dict[str, np.ndarray],
                 device: str = "cpu") -> None:
        self.cfg, self.corpus, self.device = cfg, corpus, device
        self.upstream_description: dict | None = None
        self._train = [self._item(u, speaker_embeddings) for u in corpus.split("train")]
        self._valid = [self._item(u, speaker_embeddings) for u in corpus.split("valid")] or None

    @staticmethod
    def _item(u: Utterance, emb: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"id": u.id, "wav": u.wav, "tokens": u.tokens, "f0": u.f0, "speaker_embedding": emb[u.id],
                "speaker": u.speaker, "emotion": u.emotion}

    def build_model(self):
        tok = self.cfg.tokens.n_clusters
        model, desc = build_analysis_model(self.cfg, tok, len(self.corpus.speakers), len(self.corpus.emotions))
        self.upstream_description = desc
        return model

    def train_dataset(self):
        return self._train

    def valid_dataset(self):
        return self._valid

    def collate(self, items: list) -> dict[str, Any]:
        return collate_analysis(items)

    def training_step(self, model: Any, batch: dict[str, Any], state: Any) -> dict:
        grl = model.emotion.grl
        grl.set_progress(state.progress, scale=model.emotion.adv_weight, gamma=self.cfg.emotion.grl_gamma)
        out = model(batch)
        return {**model.losses(out, batch), "grl": grl.coefficient}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        parts = model.losses(out, batch)  # batch means; weighted by item count below
        n = len(batch["ids"])
        return {"emotion_logits": out["emotion_logits"], "emotion": batch["emotion"],
                **{k: [float(v)] * n for k, v in parts.items()}}

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        def mean(key: str) -> float:
            v = outputs[key]
            return float(sum(v) / max(len(v), 1))

        return {"loss": mean("loss"), "f0_l1": mean("f0_l1"), "duration_mse": mean("duration_mse"),
                "emotion_accuracy": _accuracy(outputs["emotion_logits"], outputs["emotion"])}


# ----------------------------------------------------------------------------------------------- stages
STAGE_FILE = "zest.json"


def speaker_embeddings(model: Any, corpus: Corpus) -> dict[str, np.ndarray]:
    """id -> s (dim,) float32 for every prepared utterance (model in eval mode, no grad)."""
    import torch

    model.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([u.xvector for u in corpus.items])).float()
        s = model.embed(x).cpu().numpy().astype(np.float32)
    return {u.id: s[i] for i, u in enumerate(corpus.items)}


def load_speaker_stage(run_dir: str | os.PathLike) -> tuple[Any, dict]:
    """Rebuild the trained SpeakerEncoder of a speaker-stage run (best weights) -> (model, zest.json info)."""
    from emotk.core.config import from_dict
    from emotk.models.zest.config import ZestConfig
    from emotk.train.checkpoint import load_model_weights

    info = read_stage(run_dir, "speaker")
    cfg = from_dict(ZestConfig, info["config"])
    model = build_speaker_model(cfg, info["xvector_dim"], len(info["speakers"]), len(info["emotions"]))
    load_model_weights(run_dir, model)
    return model.eval(), info


def read_stage(run_dir: str | os.PathLike, stage: str) -> dict[str, Any]:
    """``run_dir/zest.json`` of a finished/started stage; DataError when absent or of another stage."""
    path = Path(run_dir) / STAGE_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: not an S2S-ZEST {stage}-stage run (no {STAGE_FILE}); train it with "
                        f"`emotk transfer train --stage {stage}`")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("stage") != stage:
        raise DataError(f"{path}: a '{info.get('stage')}' stage run, expected '{stage}'")
    return info


def train_stage(resolved: Any, stage: str, out: str | os.PathLike, *, speaker_run: str | None = None,
                resume: bool = False, overwrite: bool = False, device: str | None = None,
                argv: list[str] | None = None) -> dict[str, Any]:
    """Train stage ``speaker`` or ``analysis`` of S2S-ZEST into run directory ``out``.

    resolved: a :class:`emotk.core.config.Resolved` of :class:`ZestConfig`; speaker_run: the speaker-stage run
    (needed by ``analysis``: its s is the F0/duration conditioning). Writes ``zest.json`` (labels, dims, HuBERT
    config) beside the checkpoints. Returns the trainer summary plus ``run_dir`` and ``stage``.
    """
    import dataclasses as dc

    import torch

    from emotk.core.config import to_dict
    from emotk.core.io import atomic_write_json
    from emotk.core.runs import RunDir
    from emotk.train.trainer import Trainer

    cfg = resolved.config
    if stage not in ("speaker", "analysis"):
        raise UsageError(f"unknown stage {stage!r} (speaker, analysis, vocoder)")
    if not cfg.data.manifest:
        raise UsageError("no training manifest: pass --data M.jsonl (or set data.manifest)")
    if stage == "analysis" and not speaker_run:
        raise UsageError("the analysis stage needs the trained speaker encoder: pass --speaker RUN_DIR")
    dev = device or resolved.runtime.device or "cpu"
    dev = "cpu" if dev == "auto" and not torch.cuda.is_available() else ("cuda" if dev == "auto" else dev)
    runtime = dc.replace(resolved.runtime, device=dev)
    from emotk.train import distributed as dist

    if dist.is_main():  # under torchrun/srun: rank 0 creates the run and fills the feature cache first
        run = RunDir.create(out, resolved, overwrite=overwrite, resume=resume, device=dev, argv=argv,
                            inputs={"manifest": str(cfg.data.manifest)})
        corpus = prepare_corpus(cfg, cfg.data.manifest, Path(out) / "cache", device=dev)
    dist.barrier()
    if not dist.is_main():
        run = RunDir.open(out)
        corpus = prepare_corpus(cfg, cfg.data.manifest, Path(out) / "cache", device=dev)
    info: dict[str, Any] = {"stage": stage, "config": to_dict(cfg), "speakers": corpus.speakers,
                            "emotions": corpus.emotions, "xvector_dim": corpus.xvector_dim,
                            "manifest_sha256": corpus.manifest_sha256, "tokenizer": str(Path(cfg.tokens.tokenizer).resolve())}
    if stage == "speaker":
        task: Any = SpeakerTask(cfg, corpus)
        train_cfg = cfg.speaker_train
    else:
        spk_model, spk_info = load_speaker_stage(speaker_run)
        info["speaker_run"] = str(Path(speaker_run).resolve())
        info["speaker_labels"] = spk_info["speakers"]
        task = AnalysisTask(cfg, corpus, speaker_embeddings(spk_model, corpus), device=dev)
        train_cfg = cfg.train
    trainer = Trainer(train_cfg, task, run, runtime)
    if stage == "analysis":
        info["upstream"] = task.upstream_description
    if dist.is_main():
        atomic_write_json(Path(out) / STAGE_FILE, info)
    summary = trainer.fit(resume=resume)
    return {"stage": stage, "run_dir": str(out), **summary}
