"""The S2S-ZEST inference bundle: one directory with every trained analysis piece.

Layout (safetensors + JSON, no pickle)::

    BUNDLE/bundle.json            format, config, label lists, dimensions, HuBERT config, ECAPA name, provenance
    BUNDLE/speaker.safetensors    SpeakerEncoder (2 FC layers + heads); the ECAPA front-end is named, not copied
    BUNDLE/analysis.safetensors   emotion encoder (fine-tuned HuBERT) + F0 predictor + duration predictor
    BUNDLE/tokenizer.safetensors  KMeansTokenizer (+ tokenizer.json); its feature space names the content model

``vocoder`` in bundle.json (optional) is the path of an exported BigVGAN generator (the vocoder helper's
``export_generator`` folder). Frozen pretrained front-ends (ECAPA, the content model) are resolved through
:mod:`emotk.hub` at load time, so the bundle stays small; the fine-tuned HuBERT is stored in full.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotk.errors import DataError, OutputExistsError

FORMAT = "emotk-zest-bundle"
FORMAT_VERSION = 1


@dataclass
class ZestBundle:
    """Loaded bundle: ``config`` (ZestConfig), ``speaker`` (SpeakerEncoder), ``analysis`` (AnalysisModel),
    ``tokenizer`` (KMeansTokenizer), ``speakers``/``emotions`` (label lists), ``info`` (bundle.json),
    ``path``, ``device``. Front-ends are built on first use (:meth:`xvectors`, :meth:`content_frames`)."""

    config: Any
    speaker: Any
    analysis: Any
    tokenizer: Any
    speakers: list[str]
    emotions: list[str]
    info: dict[str, Any]
    path: Path
    device: str = "cpu"
    _xvectors: Any = None
    _frames: Any = None

    def xvectors(self) -> Any:
        """The frozen ECAPA :class:`~emotk.models.zest.speaker.XVectorExtractor` named in the bundle."""
        if self._xvectors is None:
            from emotk.models.zest.speaker import XVectorExtractor

            s = self.config.speaker
            self._xvectors = XVectorExtractor(s.ecapa, s.ecapa_path, device=self.device)
        return self._xvectors

    def content_frames(self) -> Any:
        """The :class:`~emotk.features.tokens.ContentFrames` of the tokenizer's feature space."""
        if self._frames is None:
            from emotk.features.tokens import ContentFrames

            self._frames = ContentFrames(self.tokenizer.space, device=self.device)
        return self._frames

    @property
    def vocoder(self) -> str | None:
        return self.info.get("vocoder") or None


def _save_model(model: Any, path: Path) -> str:
    from safetensors.torch import save_model

    from emotk.core.io import sha256_file

    save_model(model, str(path))
    return sha256_file(path)


def save_bundle(out: str | os.PathLike, *, config: Any, speaker: Any, analysis: Any, tokenizer: Any,
                speakers: list[str], emotions: list[str], xvector_dim: int, upstream: dict[str, Any],
                vocoder: str | None = None, sources: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Write a bundle directory atomically (built in a temp folder beside ``out``, then renamed); returns ``out``.

    upstream: {"hf_config": dict, "normalize": bool} of the emotion encoder's HuBERT (from build_upstream).
    Raises OutputExistsError when ``out`` exists and ``overwrite`` is False.
    """
    from emotk.core.config import to_dict
    from emotk.core.io import atomic_write_json

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        digests = {"speaker.safetensors": _save_model(speaker, tmp / "speaker.safetensors"),
                   "analysis.safetensors": _save_model(analysis, tmp / "analysis.safetensors")}
        tokenizer.save(tmp / "tokenizer.safetensors")
        info = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": to_dict(config),
                "speakers": list(speakers), "emotions": list(emotions), "xvector_dim": int(xvector_dim),
                "num_tokens": int(tokenizer.n_clusters), "upstream": upstream,
                "vocoder": str(Path(vocoder).resolve()) if vocoder else None, "sha256": digests,
                "sources": sources or {}}
        atomic_write_json(tmp / "bundle.json", info)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_bundle(path: str | os.PathLike, device: str = "cpu") -> ZestBundle:
    """Read a bundle directory written by :func:`save_bundle` -> :class:`ZestBundle` (models in eval mode).

    Raises DataError naming the file when the folder is not a bundle or its weights do not fit.
    """
    from emotk.core.config import from_dict
    from emotk.features.tokens import KMeansTokenizer
    from emotk.models.zest.config import ZestConfig
    from emotk.models.zest.model import build_analysis_model, build_speaker_model
    from emotk.train.checkpoint import load_model_weights

    path = Path(path)
    meta = path / "bundle.json"
    if not meta.is_file():
        raise DataError(f"{path}: not an S2S-ZEST model bundle (no bundle.json); build one with "
                        "`emotk transfer bundle --speaker RUN --analysis RUN -o DIR`")
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{meta}:{e.lineno}: invalid JSON ({e.msg})") from None
    if info.get("format") != FORMAT or int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{meta}: unsupported bundle format {info.get('format')} v{info.get('format_version')}")
    cfg = from_dict(ZestConfig, info["config"])
    speakers, emotions = info["speakers"], info["emotions"]
    speaker = build_speaker_model(cfg, info["xvector_dim"], len(speakers), len(emotions))
    load_model_weights(path / "speaker.safetensors", speaker)
    up = info["upstream"]
    analysis, _ = build_analysis_model(cfg, info["num_tokens"], len(speakers), len(emotions),
                                       hf_config=up["hf_config"], normalize=up["normalize"], device="cpu")
    load_model_weights(path / "analysis.safetensors", analysis)
    tokenizer = KMeansTokenizer.load(path / "tokenizer.safetensors")
    return ZestBundle(cfg, speaker.to(device).eval(), analysis.to(device).eval(), tokenizer, speakers, emotions,
                      info, path, device)


def assemble_bundle(speaker_run: str | os.PathLike, analysis_run: str | os.PathLike, out: str | os.PathLike,
                    vocoder: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Build a bundle from a speaker-stage run and an analysis-stage run (their best checkpoints).

    Checks that the analysis run was trained on this speaker run's embeddings (same label lists). Returns a
    JSON-ready summary (path, labels, parameter counts, sources).
    """
    from emotk.core.config import from_dict
    from emotk.models.zest.config import ZestConfig
    from emotk.models.zest.data import load_tokenizer
    from emotk.models.zest.model import build_analysis_model
    from emotk.models.zest.task import load_speaker_stage, read_stage
    from emotk.train.checkpoint import load_model_weights, resolve_weights

    speaker, spk_info = load_speaker_stage(speaker_run)
    info = read_stage(analysis_run, "analysis")
    if info.get("speaker_labels") != spk_info["speakers"]:
        raise DataError(f"{analysis_run}: trained with another speaker encoder than {speaker_run} "
                        "(speaker label lists differ)")
    cfg = from_dict(ZestConfig, info["config"])
    up = info["upstream"]
    analysis, _ = build_analysis_model(cfg, cfg.tokens.n_clusters, len(info["speakers"]), len(info["emotions"]),
                                       hf_config=up["hf_config"], normalize=up["normalize"])
    load_model_weights(analysis_run, analysis)
    tokenizer = load_tokenizer(info["tokenizer"], cfg.tokens.n_clusters)
    if vocoder:
        vpath = Path(vocoder)
        if not vpath.exists():
            raise DataError(f"vocoder export {vocoder} does not exist")
    sources = {"speaker_run": str(Path(speaker_run).resolve()), "analysis_run": str(Path(analysis_run).resolve()),
               "speaker_weights": str(resolve_weights(speaker_run)),
               "analysis_weights": str(resolve_weights(analysis_run)), "tokenizer": info["tokenizer"],
               "manifest_sha256": info.get("manifest_sha256")}
    path = save_bundle(out, config=cfg, speaker=speaker, analysis=analysis, tokenizer=tokenizer,
                       speakers=info["speakers"], emotions=info["emotions"], xvector_dim=spk_info["xvector_dim"],
                       upstream=up, vocoder=vocoder, sources=sources, overwrite=overwrite)
    return {"bundle": str(path), "speakers": info["speakers"], "emotions": info["emotions"],
            "parameters": {"speaker": sum(p.numel() for p in speaker.parameters()),
                           "analysis": sum(p.numel() for p in analysis.parameters())},
            "vocoder": vocoder, "sources": sources}
