"""SER inference: ``ser predict`` over audio files, manifests or stdin with an export bundle.

:class:`SerPredictor` loads an export folder (:func:`emotk.models.ser.export.load_export`: the downstream and
its ``config.json``) and builds the feature front-end it names. At predict time the audio goes through the same
front-end code as training (:func:`.features.build_feature_fn`, including the storage-precision rounding), then
the downstream; each input gives one JSON object.

Feature cache: :func:`predict` looks each input up in a per-utterance feature cache
(:class:`emotk.features.cache.UtteranceCache`, by id + file stat, else the audio's sha256) and encodes only what is
not there. ``cache=DIR`` (``--cache DIR``) reads and adds to ``DIR/ser-input-<hash12>/``; by default the cache of
the ``ser train`` folder the export belongs to (its ``upstream.cache_dir``, else ``OUT/features``) is read, never
written; ``cache=False`` (``--no-cache``) encodes everything. Cached features are the stored bytes of the same
front-end, so predictions are the same as from fresh extraction.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from emotk.core.audio import SAMPLE_RATE
from emotk.core.log import get_logger
from emotk.errors import AudioError, DataError, UsageError
from emotk.models.ser.export import WEIGHTS, load_export

# WEIGHTS: the export's weights file name
__all__ = ["WEIGHTS", "SerPredictor", "find_run_cache", "iter_inputs", "predict"]

log = get_logger("ser")


class SerPredictor:
    """A loaded export bundle: ``predictor(wavs)`` -> one result dict per waveform.

    folder: an export folder, or a run folder holding ``export/``. device: torch device for upstream and head.
    cache: a feature-cache root to read (:meth:`cached`); ``write_cache``: also store what :meth:`encode` computes
    there (:meth:`store`). With a cache the upstream is loaded only when an input is not in it.
    """

    def __init__(self, folder: str | os.PathLike, device: str = "cpu", cache: str | os.PathLike | None = None,
                 write_cache: bool = False) -> None:
        import torch

        from emotk.core.config import from_dict
        from emotk.models.ser.features import SerFeatures, build_feature_fn

        self.device = torch.device(device)
        self.model, meta, self.folder = load_export(folder, device=self.device)
        self.meta = meta
        if meta.get("speaker_norm", "none") != "none":
            raise UsageError(f"{self.folder}: this model was trained with data.speaker_norm={meta['speaker_norm']} "
                             "(transductive, from each speaker's own utterances); single files have no speaker "
                             "statistics -- score a manifest with speakers: emotk ser evaluate RUN --data MANIFEST "
                             "--split all")
        self.regression = meta["task_type"] == "regression"
        self.classes = meta.get("classes")
        self.target_names = meta.get("target_names")
        self.features_cfg = from_dict(SerFeatures, meta["features"], prefix="features.")
        self.cache: Any = None  # an UtteranceCache (see attach_cache)
        self._writer: Any = None
        if cache is not None:
            self.attach_cache(cache, write=write_cache)
        self._fn = None if self.cache is not None else build_feature_fn(self.features_cfg, str(self.device))

    # ---- features -------------------------------------------------------------------------------------------
    def attach_cache(self, root: str | os.PathLike, write: bool = False) -> bool:
        """Use the ``ser-input`` cache of this export's feature config under ``root``; ``write``: make it when
        absent and store newly encoded utterances there. False when it does not exist (and ``write`` is off)."""
        from emotk.features.cache import UtteranceCache
        from emotk.features.extract import _hashed
        from emotk.models.ser.features import KIND, register

        register()
        key = _hashed(KIND, self.features_cfg)
        try:
            self.cache = (UtteranceCache.create(root, KIND, key) if write else UtteranceCache.open(root, KIND, key))
        except DataError:
            if write:
                raise
            return False
        self._writer = self.cache.writer() if write else None
        return True

    def encode(self, wavs: list[Any]) -> list[dict[str, Any]]:
        """N 16 kHz mono waveforms -> N ``{"hidden": (L, T, D)}`` through the training front-end."""
        if self._fn is None:
            from emotk.models.ser.features import build_feature_fn

            self._fn = build_feature_fn(self.features_cfg, str(self.device))
        return self._fn(wavs)

    def cached(self, uid: str, source: Any) -> dict[str, Any] | None:
        """The cached features of utterance ``uid`` read from ``source`` (an AudioSource), or None."""
        if self.cache is None:
            return None
        entry = self.cache.lookup(uid, source)
        return None if entry is None else {"hidden": self.cache.read(entry, "hidden")}

    def store(self, uid: str, source: Any, features: dict[str, Any]) -> None:
        """Add encoded features to the cache (when attached with ``write``; stored every 64 utterances and by
        :meth:`close`)."""
        if self._writer is not None:
            self._writer.add(uid, source, features)

    def close(self) -> None:
        """Store what :meth:`store` still buffers."""
        if self._writer is not None:
            self._writer.flush()

    def __call__(self, wavs: list[Any] | None = None, *, features: list[dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
        """N 16 kHz mono float waveforms (or their ``features`` from :meth:`encode` / :meth:`cached`) -> N dicts:
        ``label`` + ``probabilities`` {class: p} (classification) or ``prediction`` {target: value} (regression)."""
        import torch

        from emotk.models.ser.task import collate_features

        feats = features if features is not None else self.encode(wavs or [])
        items = [{"id": str(i), "hidden": torch.from_numpy(f["hidden"]), "target": [0.0] if self.regression else 0}
                 for i, f in enumerate(feats)]
        batch = collate_features(items, self.regression)
        with torch.no_grad():
            out = self.model(batch["hidden"].to(self.device), batch["lengths"].to(self.device)).float().cpu()
        results = []
        for row in out:
            if self.regression:
                results.append({"prediction": {n: round(float(v), 6) for n, v in zip(self.target_names, row)}})
            else:
                probs = torch.softmax(row, dim=-1)
                results.append({"label": self.classes[int(probs.argmax())],
                                "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, probs)}})
        return results


# ---- inputs -------------------------------------------------------------------------------------------------
def iter_inputs(inputs: Iterable[str], roots: dict[str, str] | None = None,
                stdin: Any = None) -> Iterator[dict[str, Any]]:
    """Expand predict inputs into ``{"id", "path", "start", "end", "where"}`` items, in order.

    An input is a wav/flac path, a JSONL manifest (``.jsonl``: one item per record, its id and segment), or
    ``-``: one path (or one JSON manifest record) per line of stdin. A bad manifest line yields an item with
    an ``error`` instead of a path.
    """
    from emotk.data.manifest import Manifest, iter_jsonl, record_problems, resolve_audio_path

    for text in inputs:
        if text == "-":
            stream = stdin if stdin is not None else sys.stdin
            for lineno, line in enumerate(stream, start=1):
                line = line.strip()
                if not line:
                    continue
                where = f"<stdin>:{lineno}"
                if line.startswith("{"):
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        yield {"id": where, "where": where, "error": f"invalid JSON ({e.msg})"}
                        continue
                    if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
                        yield {"id": where, "where": where, "error": "a JSON line needs a 'path'"}
                        continue
                    try:
                        path = resolve_audio_path(rec["path"], Path.cwd(), roots)
                    except DataError as e:
                        yield {"id": str(rec.get("id", where)), "where": where, "error": str(e)}
                        continue
                    yield {"id": str(rec.get("id", rec["path"])), "path": path, "start": rec.get("start"),
                           "end": rec.get("end"), "where": where}
                else:
                    yield {"id": line, "path": Path(line), "start": None, "end": None, "where": where}
            continue
        p = Path(text)
        if p.suffix == ".jsonl":
            if not p.is_file():
                yield {"id": text, "where": text, "error": "manifest not found"}
                continue
            base = Manifest(records=[], path=p, roots=dict(roots or {}))
            for lineno, rec, err in iter_jsonl(p):
                where = f"{p}:{lineno}"
                problems = record_problems(rec) if err is None else [("", err)]
                if problems:
                    uid = rec.get("id") if isinstance(rec, dict) and isinstance(rec.get("id"), str) else where
                    yield {"id": uid, "where": where, "error": problems[0][1]}
                    continue
                try:
                    path = base.resolve_path(rec)
                except DataError as e:
                    yield {"id": rec["id"], "where": where, "error": str(e)}
                    continue
                yield {"id": rec["id"], "path": path, "start": rec.get("start"), "end": rec.get("end"), "where": where}
            continue
        yield {"id": text, "path": p, "start": None, "end": None, "where": text}


def predict(model_dir: "str | os.PathLike | SerPredictor", inputs: list[str], *, skip_bad: bool = False,
            batch_size: int = 16, device: str = "cpu", roots: dict[str, str] | None = None, stdin: Any = None,
            cache: "str | os.PathLike | bool | None" = None) -> Iterator[dict[str, Any]]:
    """Yield one result per good input, in input order: ``{"id", "label", "probabilities"}`` (or ``prediction``).

    model_dir: an export folder (or run folder), or an already loaded :class:`SerPredictor`.
    cache: a feature-cache root to read and add to; None: read the cache of the export's ``ser train`` folder
    when there is one (:func:`find_run_cache`); False: none. Cached inputs are not decoded or encoded.

    A bad input (unreadable/too-short audio, bad manifest line) raises AudioError/DataError naming it, or with
    ``skip_bad`` yields ``{"id", "skipped": reason}`` (callers list these apart from the results) and goes on.
    """
    from emotk.data.audio import load_audio
    from emotk.features.cache import AudioSource

    if isinstance(model_dir, SerPredictor):
        predictor = model_dir
    else:
        write = cache not in (None, False, True)
        predictor = SerPredictor(model_dir, device=device, cache=cache if write else None, write_cache=write)
    if cache is None and predictor.cache is None:
        found = find_run_cache(predictor)
        if found is not None:
            predictor.attach_cache(found)
    if predictor.cache is not None:
        log.debug(f"ser predict: reading cached features from {predictor.cache.path}")
    pending: list[tuple[dict[str, Any], Any, Any, Any]] = []  # (item, wav, cached features, source)
    counts = {"cached": 0, "encoded": 0}

    def flush() -> Iterator[dict[str, Any]]:
        if not pending:
            return
        todo = [k for k, p in enumerate(pending) if p[2] is None]
        feats = [p[2] for p in pending]
        if todo:
            for k, f in zip(todo, predictor.encode([pending[k][1] for k in todo])):
                feats[k] = f
                if pending[k][3] is not None:
                    predictor.store(pending[k][0]["id"], pending[k][3], f)
        counts["encoded"] += len(todo)
        counts["cached"] += len(pending) - len(todo)
        results = predictor(features=feats)
        for (item, *_), res in zip(pending, results):
            yield {"id": item["id"], **res}
        pending.clear()

    try:
        for item in iter_inputs(inputs, roots=roots, stdin=stdin):
            error = item.get("error")
            wav = feats = source = None
            if error is None and predictor.cache is not None:
                source = AudioSource(item["path"], item.get("start"), item.get("end"))
                feats = predictor.cached(item["id"], source)
            if error is None and feats is None:
                try:
                    wav = load_audio(item["path"], sr=SAMPLE_RATE, start=item.get("start"), end=item.get("end"))
                except AudioError as e:
                    error = str(e)
            if error is not None:
                message = error if str(item.get("path", "")) in error else f"{item['where']}: {error}"
                if not skip_bad:
                    raise AudioError(f"{message} (pass --skip-bad to skip bad inputs)")
                yield {"id": item["id"], "skipped": message}
                continue
            pending.append((item, wav, feats, source))
            if len(pending) >= batch_size:
                yield from flush()
        yield from flush()
    finally:
        predictor.close()
    if predictor.cache is not None:
        log.debug(f"ser predict: {counts['cached']} input(s) from the feature cache, {counts['encoded']} encoded")


def find_run_cache(predictor: SerPredictor) -> Path | None:
    """The feature-cache root of the ``ser train`` folder that ``predictor``'s export belongs to and that holds
    features of its config: the run's ``upstream.cache_dir``, else ``<experiment>/features`` (None if none)."""
    from emotk.features.cache import cache_dir_name
    from emotk.features.extract import _hashed
    from emotk.models.ser.features import KIND

    name = cache_dir_name(KIND, _hashed(KIND, predictor.features_cfg))[0]
    folder = Path(predictor.folder).resolve()
    owners = [folder.parent]  # OUT/export -> OUT; OUT/runs/<run>/export -> the run, then OUT
    if folder.parent.parent.name == "runs":
        owners.append(folder.parent.parent.parent)
    roots: list[Path] = []
    for d in owners:
        try:
            meta = json.loads((d / "run.json").read_text(encoding="utf-8"))
            configured = ((meta.get("config") or {}).get("upstream") or {}).get("cache_dir")
        except (OSError, ValueError, AttributeError):
            configured = None
        if configured:
            roots.append(Path(configured))
        roots.append(d / "features")
    for root in roots:
        if (root / name / "meta.json").is_file():
            return root
    return None


def load_emotion_embedder(export_dir: str | os.PathLike, device: str = "cpu") -> Any:
    """An SER classification export as an emotion embedder (:class:`emotk.eval.systems.EmotionEmbedder`): the class
    posteriors are the embedding, so Emo-Sim is the cosine of two utterances' predicted emotion distributions (a
    measure of emotion alone). ``embed(wav) -> (C,)``, ``embed_batch(wavs) -> (N, C)`` in the export's class
    order. Name: ``ser-posteriors:<classes joined by '/'>:<sha12 of model.safetensors>``. UsageError for a
    regression export."""
    import numpy as np

    from emotk.core.io import sha256_file
    from emotk.errors import UsageError
    from emotk.features.speaker import check_wav

    predictor = SerPredictor(export_dir, device=device)
    if predictor.regression or not predictor.classes:
        raise UsageError(f"emotion embedder ser:{export_dir}: a classification export is needed (this one regresses "
                         f"{', '.join(predictor.target_names or [])})")
    classes = list(predictor.classes)

    class SerEmotionEmbedder:
        name = f"ser-posteriors:{'/'.join(classes)}:{sha256_file(predictor.folder / WEIGHTS)[:12]}"

        def __init__(self) -> None:
            self.predictor, self.classes = predictor, classes

        def embed(self, wav: Any) -> np.ndarray:
            """16 kHz waveform (S,) -> (C,) float32 class posteriors (sum 1)."""
            return self.embed_batch([wav])[0]

        def embed_batch(self, wavs: Any) -> np.ndarray:
            """N 16 kHz waveforms -> (N, C) float32 class posteriors in the export's class order."""
            items = [check_wav(w, f"emotion-similarity input {i}", min_samples=320) for i, w in enumerate(wavs)]
            if not items:
                return np.zeros((0, len(classes)), np.float32)
            return np.array([[r["probabilities"][c] for c in classes] for r in predictor(items)], dtype=np.float32)

    return SerEmotionEmbedder()
