"""SER inference: ``ser predict`` over audio files, manifests or stdin with an export bundle.

:class:`SerPredictor` loads an export folder (:func:`emotk.models.ser.export.load_export`: the downstream and
its ``config.json``) and builds the feature front-end it names. At predict time the audio goes through the same
front-end code as training (:func:`.features.build_feature_fn`, including the storage-precision rounding), then
the downstream; each input gives one JSON object.
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

__all__ = ["WEIGHTS", "SerPredictor", "iter_inputs", "predict"]  # WEIGHTS: the export's weights file name

log = get_logger("ser")


class SerPredictor:
    """A loaded export bundle: ``predictor(wavs)`` -> one result dict per waveform.

    folder: an export folder, or a run folder holding ``export/``. device: torch device for upstream and head.
    """

    def __init__(self, folder: str | os.PathLike, device: str = "cpu") -> None:
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
        self._features = build_feature_fn(self.features_cfg, str(self.device))

    def __call__(self, wavs: list[Any]) -> list[dict[str, Any]]:
        """N 16 kHz mono float waveforms -> N dicts: ``label`` + ``probabilities`` {class: p} (classification)
        or ``prediction`` {target: value} (regression)."""
        import torch

        from emotk.models.ser.task import collate_features

        feats = self._features(wavs)
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
            batch_size: int = 16, device: str = "cpu", roots: dict[str, str] | None = None, stdin: Any = None
            ) -> Iterator[dict[str, Any]]:
    """Yield one result per good input, in input order: ``{"id", "label", "probabilities"}`` (or ``prediction``).

    model_dir: an export folder (or run folder), or an already loaded :class:`SerPredictor`.

    A bad input (unreadable/too-short audio, bad manifest line) raises AudioError/DataError naming it, or with
    ``skip_bad`` yields ``{"id", "skipped": reason}`` (callers list these apart from the results) and goes on.
    """
    from emotk.data.audio import load_audio

    predictor = model_dir if isinstance(model_dir, SerPredictor) else SerPredictor(model_dir, device=device)
    pending: list[tuple[dict[str, Any], Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        if not pending:
            return
        results = predictor([w for _, w in pending])
        for (item, _), res in zip(pending, results):
            yield {"id": item["id"], **res}
        pending.clear()

    for item in iter_inputs(inputs, roots=roots, stdin=stdin):
        error = item.get("error")
        if error is None:
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
        pending.append((item, wav))
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()


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
