"""The SER inference bundle (``export/``) and ``ser predict``.

An export folder is everything ``predict`` needs, on its own::

    export/model.safetensors   the SUPERB downstream's weights
    export/config.json         format + version, task type, classes (or regression targets), downstream dims and
                               settings, the feature front-end (:class:`~emotk.models.ser.features.SerFeatures`:
                               upstream name/path, layers, storage dtype, crop/pad), provenance of the source run

At predict time the audio goes through the same front-end code as training (:func:`.features.build_feature_fn`,
including the storage-precision rounding), then the downstream; each input gives one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from emotk.core.io import atomic_path, atomic_write_json
from emotk.core.log import get_logger
from emotk.errors import AudioError, DataError

log = get_logger("ser")

EXPORT_FORMAT = "emotk.ser.export"
EXPORT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def write_export(folder: str | os.PathLike, model: Any, cfg: Any, classes: list[str] | None,
                 target_names: list[str] | None, extra: dict[str, Any] | None = None) -> Path:
    """Write the inference bundle of a trained :class:`~emotk.models.ser.superb.SuperbDownstream`.

    cfg: the run's SerConfig; classes / target_names: output meaning; extra: provenance (run, fold, seed,
    metrics, hashes). Files are written atomically; returns the folder.
    """
    from safetensors.torch import save_file

    from emotk import __version__
    from emotk.core.config import to_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": EXPORT_FORMAT})
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "task": "ser.superb",
        "task_type": cfg.task_type,
        "classes": classes,
        "target_names": target_names,
        "dims": asdict(model.dims),
        "model": to_dict(cfg.model),
        "features": to_dict(cfg.feature_config()),
        "emotk_version": __version__,
        **(extra or {}),
    }
    atomic_write_json(folder / CONFIG, meta)
    return folder


class SerPredictor:
    """A loaded export bundle: ``predictor(wavs)`` -> one result dict per waveform.

    folder: an export folder, or a run folder holding ``export/``. device: torch device for upstream and head.
    """

    def __init__(self, folder: str | os.PathLike, device: str = "cpu") -> None:
        import torch
        from safetensors.torch import load_file

        from emotk.core.config import from_dict
        from emotk.models.ser.features import SerFeatures, build_feature_fn
        from emotk.models.ser.superb import SuperbDims, SuperbDownstream

        self.folder = find_export(folder)
        try:
            meta = json.loads((self.folder / CONFIG).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{self.folder / CONFIG}: unreadable export config ({e})") from None
        if meta.get("format") != EXPORT_FORMAT:
            raise DataError(f"{self.folder}: not an emotk SER export (format {meta.get('format')!r})")
        if int(meta.get("format_version", 0)) > EXPORT_VERSION:
            raise DataError(f"{self.folder}: export format version {meta['format_version']} is newer than this "
                            f"emotk understands ({EXPORT_VERSION}); upgrade emotk")
        self.meta = meta
        self.regression = meta["task_type"] == "regression"
        self.classes = meta.get("classes")
        self.target_names = meta.get("target_names")
        m = meta["model"]
        self.model = SuperbDownstream(SuperbDims(**meta["dims"]), head_hidden=m["head_hidden"], dropout=m["dropout"],
                                      pooling=m["pooling"], layer_norm=m["layer_norm"], compat=m["compat"],
                                      feature_norm=m.get("feature_norm", False))
        state = load_file(str(self.folder / WEIGHTS))
        try:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise DataError(f"{self.folder / WEIGHTS}: weights do not fit the model in {CONFIG} "
                            f"({str(e).splitlines()[-1].strip()[:200]})") from None
        if missing or unexpected:
            raise DataError(f"{self.folder / WEIGHTS}: weights do not fit the model in {CONFIG} "
                            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
        self.device = torch.device(device)
        self.model.to(self.device).eval()
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


def find_export(folder: str | os.PathLike) -> Path:
    """The export folder for ``folder``: itself, ``folder/export``, or DataError naming what is missing."""
    folder = Path(folder)
    for cand in (folder, folder / "export"):
        if (cand / CONFIG).is_file() and (cand / WEIGHTS).is_file():
            return cand
    raise DataError(f"{folder}: no SER export here (expected {CONFIG} and {WEIGHTS}, e.g. RUN_DIR/export); "
                    "train one with `emotk ser train`")


# ---- inputs -------------------------------------------------------------------------------------------------
def iter_inputs(inputs: Iterable[str], roots: dict[str, str] | None = None, stdin: Any = None) -> Iterator[dict[str, Any]]:
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


def predict(model_dir: "str | os.PathLike | SerPredictor", inputs: list[str], *, skip_bad: bool = False, batch_size: int = 16,
            device: str = "cpu", roots: dict[str, str] | None = None, stdin: Any = None
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
                wav = load_audio(item["path"], sr=16000, start=item.get("start"), end=item.get("end"))
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
