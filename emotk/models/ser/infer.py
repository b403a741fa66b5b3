"""SER inference: ``ser predict`` over audio files, manifests or stdin with an export bundle.

:class:`SerPredictor` loads an export folder (:func:`emotk.models.ser.export.load_export`: the downstream and
its ``config.json``) and builds the feature front-end it names. At predict time the audio goes through the same
front-end code as training (:func:`.features.build_feature_fn`, including the storage-precision rounding), then
the downstream; each input gives one JSON object, in the schema of ``ser evaluate``'s ``predictions.jsonl``:

* classification: ``id``, ``label`` (the truth, only when the input record has one that maps onto a class of the
  model), ``source_label`` (the record's label as written, when it differs from ``label`` or maps onto no class),
  ``prediction`` (the predicted class), ``probabilities`` ``{class: p}`` over every class of the model;
* regression: ``id``, ``target`` ``{name: value}`` (only when the record has every target field), ``prediction``
  ``{name: value}``.

A record's label is mapped onto the model's classes as ``ser evaluate --data`` does
(:func:`emotk.data.labels.match_labels`: a user mapping, the class name, the training run's label map, synonyms).

Feature cache: :func:`iter_outputs` (so :func:`predict` and ``ser predict --score``) looks each input up in a
per-utterance feature cache (:class:`emotk.features.cache.UtteranceCache`, by id + file stat, else the audio's
sha256) and decodes and encodes only what is not there. ``cache=DIR`` (``--cache DIR``) reads and adds to
``DIR/ser-input-<hash12>/``; by default the cache of the ``ser train`` folder the export belongs to (its
``upstream.cache_dir``, else ``OUT/features``) is read, never written; ``cache=False`` (``--no-cache``) encodes
everything (:func:`load_predictor`). Cached features are the stored bytes of the same front-end, so predictions
are the same as from fresh extraction.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

from emotk.core.audio import SAMPLE_RATE
from emotk.core.log import get_logger
from emotk.errors import AudioError, DataError, UsageError
from emotk.models.ser.export import WEIGHTS, load_export

# WEIGHTS: the export's weights file name
__all__ = ["WEIGHTS", "SerPredictor", "TruthReader", "find_run_cache", "iter_inputs", "iter_outputs", "load_predictor",
           "predict"]

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
        self._run: dict[str, Any] | None = None
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

    # ---- outputs --------------------------------------------------------------------------------------------
    def outputs(self, wavs: list[Any] | None = None, *, features: list[dict[str, Any]] | None = None) -> Any:
        """N 16 kHz mono float waveforms (or their ``features`` from :meth:`encode` / :meth:`cached`) -> (N, K)
        float32 CPU tensor: class logits (classification) or the regressed values (regression), K = classes or
        targets."""
        import torch

        from emotk.models.ser.task import collate_features

        feats = features if features is not None else self.encode(wavs or [])
        items = [{"id": str(i), "hidden": torch.from_numpy(f["hidden"]), "target": [0.0] if self.regression else 0}
                 for i, f in enumerate(feats)]
        batch = collate_features(items, self.regression)
        with torch.no_grad():
            return self.model(batch["hidden"].to(self.device), batch["lengths"].to(self.device)).float().cpu()

    def format(self, row: Any) -> dict[str, Any]:
        """One row of :meth:`outputs` -> ``{"prediction": class, "probabilities": {class: p}}`` (classification)
        or ``{"prediction": {target: value}}`` (regression)."""
        import torch

        if self.regression:
            return {"prediction": {n: round(float(v), 6) for n, v in zip(self.target_names, row)}}
        probs = torch.softmax(row, dim=-1)
        return {"prediction": self.classes[int(probs.argmax())],
                "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, probs)}}

    def __call__(self, wavs: list[Any] | None = None, *, features: list[dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
        """N 16 kHz mono float waveforms (or their ``features``) -> N dicts of :meth:`format`."""
        return [self.format(row) for row in self.outputs(wavs, features=features)]

    @property
    def training_run(self) -> dict[str, Any]:
        """The ``run.json`` of the run this export came from, when it is still beside the export (``ser train``'s
        ``OUT/export`` -> ``OUT/runs/<source_run>/run.json``; ``runs/<run>/export`` -> ``runs/<run>/run.json``);
        ``{}`` when not found. Gives the loss and label settings that the export itself does not keep."""
        if self._run is None:
            self._run = {}
            source = str(self.meta.get("source_run") or "")
            parent = self.folder.parent
            for cand in ([parent / "runs" / source / "run.json"] if source else []) + [parent / "run.json"]:
                try:
                    meta = json.loads(cand.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(meta, dict) and isinstance(meta.get("config"), dict):
                    self._run = meta
                    break
        return self._run

    def run_config(self, section: str) -> dict[str, Any]:
        """One section (``data``, ``loss``) of the training run's config, ``{}`` when the run is not found."""
        value = self.training_run.get("config", {}).get(section)
        return value if isinstance(value, dict) else {}


class TruthReader:
    """The truth of an input record in the export's terms, as :func:`predict` writes it.

    label_field: the manifest field of the class label (default: the training run's ``data.label_field``, else
    ``emotion``). label_mapping: the user's ``{source label: class or None}`` (``--map``); a target that is not a
    class of the model is a UsageError naming the closest class. A record's label maps onto a class by the user
    mapping, the class name, the training run's label map, or a synonym (:func:`emotk.data.labels.match_labels`).
    """

    def __init__(self, predictor: SerPredictor, label_field: str | None = None,
                 label_mapping: dict[str, str | None] | None = None) -> None:
        from emotk.data.labels import match_labels

        self.regression = predictor.regression
        self.classes = list(predictor.classes or [])
        self.target_names = list(predictor.target_names or [])
        self.label_field = label_field or str(predictor.run_config("data").get("label_field") or "emotion")
        self.user = dict(label_mapping or {})
        if self.user and self.regression:
            raise UsageError("--map: this model regresses "
                             f"{', '.join(self.target_names)}; label mappings are for classification models")
        if self.user:
            match_labels({s: 1 for s in self.user}, self.classes, self.user)  # every target must be a class
        self.base = self._base_label_map(predictor)
        self._mapped: dict[str, str | None] = {}

    @staticmethod
    def _base_label_map(predictor: SerPredictor) -> Any:
        """The training run's label map (raw codes -> classes), when it can be found; else None."""
        from emotk.data.labels import find_label_map

        for name in (predictor.run_config("data").get("label_map"), predictor.meta.get("label_map")):
            if not name:
                continue
            try:
                return find_label_map(str(name))
            except DataError:
                continue
        return None

    def raw_label(self, item: dict[str, Any]) -> str | None:
        """The record's label as written (None: no record, or no label field)."""
        rec = item.get("record")
        if not isinstance(rec, dict) or rec.get(self.label_field) is None:
            return None
        return str(rec[self.label_field])

    def map_label(self, raw: str) -> str | None:
        """A label as written -> the model's class, or None when it maps onto none."""
        from emotk.data.labels import match_labels

        if raw not in self._mapped:
            user = {raw: self.user[raw]} if raw in self.user else None
            self._mapped[raw] = match_labels({raw: 1}, self.classes, user, base=self.base).mapping[raw]
        return self._mapped[raw]

    def fields(self, item: dict[str, Any]) -> dict[str, Any]:
        """The truth fields of one input item: ``{"label", "source_label"?}`` / ``{"source_label"}`` (a label of no
        class) / ``{"target": {name: value}}`` / ``{}`` (unknown). A non-numeric target is a DataError naming it."""
        rec = item.get("record")
        if self.regression:
            if not isinstance(rec, dict) or any(rec.get(n) is None for n in self.target_names):
                return {}
            try:
                values = {n: float(rec[n]) for n in self.target_names}
            except (TypeError, ValueError):
                raise DataError(f"{item['where']}: '{item['id']}' has a non-numeric target in "
                                f"{ {n: rec[n] for n in self.target_names} }") from None
            if not all(math.isfinite(v) for v in values.values()):
                raise DataError(f"{item['where']}: '{item['id']}' has a non-finite target")
            return {"target": values}
        raw = self.raw_label(item)
        if raw is None:
            return {}
        label = self.map_label(raw)
        if label is None:
            return {"source_label": raw}
        return {"label": label} if label == raw else {"label": label, "source_label": raw}

    def what(self) -> str:
        """What a record needs to be scored, for messages."""
        if self.regression:
            return f"targets {', '.join(repr(n) for n in self.target_names)}"
        return f"'{self.label_field}' label"


# ---- inputs -------------------------------------------------------------------------------------------------
def iter_inputs(inputs: Iterable[str], roots: dict[str, str] | None = None,
                stdin: Any = None) -> Iterator[dict[str, Any]]:
    """Expand predict inputs into ``{"id", "path", "start", "end", "where", "record"?}`` items, in order.

    An input is a wav/flac path, a JSONL manifest (``.jsonl``: one item per record, its id and segment), or
    ``-``: one path (or one JSON manifest record) per line of stdin. ``record``: the manifest / JSON record (for
    its labels). ``where``: ``file:line`` (or the path). A bad manifest line yields an item with an ``error``
    instead of a path.
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
                           "end": rec.get("end"), "where": where, "record": rec}
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
                if "path" not in rec:
                    yield {"id": rec["id"], "where": where,
                           "error": f"record '{rec['id']}' has no 'path' (a text-only record): ser predict needs audio"}
                    continue
                try:
                    path = base.resolve_path(rec)
                except DataError as e:
                    yield {"id": rec["id"], "where": where, "error": str(e)}
                    continue
                yield {"id": rec["id"], "path": path, "start": rec.get("start"), "end": rec.get("end"), "where": where,
                       "record": rec}
            continue
        yield {"id": text, "path": p, "start": None, "end": None, "where": text}


def iter_outputs(predictor: SerPredictor, items: Iterable[dict[str, Any]], *, skip_bad: bool = False,
                 batch_size: int = 16) -> Iterator[tuple[dict[str, Any], Any, str | None]]:
    """Run ``predictor`` over input items (:func:`iter_inputs`), in order: ``(item, row, None)`` per good input
    (row: its (K,) output of :meth:`SerPredictor.outputs`), ``(item, None, reason)`` per skipped bad input.

    With a cache attached to ``predictor`` (:meth:`SerPredictor.attach_cache`, :func:`load_predictor`) each input
    is looked up there first (by id and audio source); cached inputs are neither decoded nor encoded, the others
    are encoded and, when the cache is writable, stored (flushed by :meth:`SerPredictor.close` at the end, also
    when the run stops early).

    A bad input (unreadable/too-short audio, bad manifest line) raises AudioError naming it, or with ``skip_bad``
    is yielded with its reason and the rest goes on."""
    from emotk.data.audio import load_audio
    from emotk.features.cache import AudioSource

    pending: list[tuple[dict[str, Any], Any, Any, Any]] = []  # (item, wav, cached features, source)
    counts = {"cached": 0, "encoded": 0}

    def flush() -> Iterator[tuple[dict[str, Any], Any, str | None]]:
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
        rows = predictor.outputs(features=feats)
        for (item, *_), row in zip(pending, rows):
            yield item, row, None
        pending.clear()

    try:
        for item in items:
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
                message = bad_input_message(item, error)
                if not skip_bad:
                    raise AudioError(f"{message} (pass --skip-bad to skip bad inputs)")
                yield item, None, message
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


def load_predictor(model_dir: "str | os.PathLike | SerPredictor", device: str = "cpu",
                   cache: "str | os.PathLike | bool | None" = None) -> SerPredictor:
    """A :class:`SerPredictor` with its feature cache: ``cache`` a root to read and add to; None: read (never write)
    the cache of the export's ``ser train`` folder when there is one (:func:`find_run_cache`); False: none.
    model_dir: an export folder (or run folder), or an already loaded predictor (a cache is attached to it only
    when it has none)."""
    if isinstance(model_dir, SerPredictor):
        predictor = model_dir
        if cache not in (None, False, True) and predictor.cache is None:
            predictor.attach_cache(cache, write=True)
    else:
        write = cache not in (None, False, True)
        predictor = SerPredictor(model_dir, device=device, cache=cache if write else None, write_cache=write)
    if cache is None and predictor.cache is None:
        found = find_run_cache(predictor)
        if found is not None:
            predictor.attach_cache(found)
    if predictor.cache is not None:
        log.debug(f"ser predict: reading cached features from {predictor.cache.path}")
    return predictor


def bad_input_message(item: dict[str, Any], error: str | None = None) -> str:
    """The one-line message of a bad input item (:func:`iter_inputs`): its error, prefixed by where it came from
    unless the error already names the file."""
    error = error if error is not None else item["error"]
    path = str(item.get("path") or "")
    return error if path and path in error else f"{item['where']}: {error}"


def predict(model_dir: "str | os.PathLike | SerPredictor", inputs: list[str], *, skip_bad: bool = False,
            batch_size: int = 16, device: str = "cpu", roots: dict[str, str] | None = None, stdin: Any = None,
            cache: "str | os.PathLike | bool | None" = None, label_field: str | None = None,
            label_mapping: dict[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
    """Yield one result per good input, in input order, in the schema of the module docstring: ``{"id",
    "label"?, "source_label"?, "prediction", "probabilities"}`` (or ``{"id", "target"?, "prediction"}``).

    model_dir: an export folder (or run folder), or an already loaded :class:`SerPredictor`.
    cache: a feature-cache root to read and add to; None: read the cache of the export's ``ser train`` folder
    when there is one (:func:`find_run_cache`); False: none (:func:`load_predictor`). Cached inputs are not
    decoded or encoded. label_field, label_mapping: how a manifest record's label becomes ``label``
    (:class:`TruthReader`).

    A bad input (unreadable/too-short audio, bad manifest line) raises AudioError/DataError naming it, or with
    ``skip_bad`` yields ``{"id", "skipped": reason}`` (callers list these apart from the results) and goes on.
    """
    predictor = load_predictor(model_dir, device=device, cache=cache)
    truth = TruthReader(predictor, label_field, label_mapping)
    items = iter_inputs(inputs, roots=roots, stdin=stdin)
    for item, row, skipped in iter_outputs(predictor, items, skip_bad=skip_bad, batch_size=batch_size):
        if skipped is not None:
            yield {"id": item["id"], "skipped": skipped}
            continue
        yield {"id": item["id"], **truth.fields(item), **predictor.format(row)}


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
