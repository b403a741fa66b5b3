"""``ser evaluate``: score the selected checkpoint of every run of a finished ``ser train`` folder again.

Reports land beside each run (``<run>/eval/<name>/``: report.json, predictions.jsonl, confusion matrix), where
``name`` is the split, or the split plus the other manifest's name and hash; the aggregate over runs is returned
(and, for an experiment folder, written as ``OUT/evaluate-<name>.json``). Another corpus's labels are mapped onto
the model's classes (names, synonyms, ``--map``) and only the shared classes are scored (see :func:`evaluate`);
a user mapping adds ``-map<hash8>`` to ``name``. A report of an earlier ``ser evaluate`` (or its aggregate) is never
replaced without ``overwrite``; ``ser train``'s own ``eval/valid`` and ``eval/test`` may be rescored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from emotk.core.io import atomic_write_json
from emotk.core.log import get_logger, track
from emotk.errors import DataError, OutputExistsError, UsageError

log = get_logger("ser")


def find_runs(run_dir: str | os.PathLike) -> list[Path]:
    """The training runs under ``run_dir``: its ``runs/*`` folders, or ``run_dir`` itself when it is one run."""
    run_dir = Path(run_dir)
    if (run_dir / "runs").is_dir():
        found = sorted(p for p in (run_dir / "runs").iterdir() if (p / "run.json").is_file())
        if found:
            return found
    if (run_dir / "run.json").is_file() and (run_dir / "ckpt").is_dir():
        return [run_dir]
    raise DataError(f"{run_dir}: no SER training runs here (expected runs/*/run.json from `emotk ser train`)")


WRITTEN_BY = "ser evaluate"  # report.json's ``written_by``: what an evaluation without overwrite may not replace


def check_outputs(runs: list[Path], root: Path, name: str, overwrite: bool) -> None:
    """Refuse (before anything is written) when an earlier ``ser evaluate`` left ``<run>/eval/<name>/`` or the
    aggregate ``evaluate-<name>.json``; ``ser train``'s own split reports are rescored freely."""
    if overwrite:
        return
    for sub in runs:
        folder = sub / "eval" / name
        if folder.exists() and (name not in ("valid", "test") or _written_by(folder) == WRITTEN_BY):
            raise OutputExistsError(f"{folder} already holds a `ser evaluate` report; pass --overwrite to replace it")
    aggregate_file = root / f"evaluate-{name}.json"
    if runs[0] != root and aggregate_file.exists():
        raise OutputExistsError(f"{aggregate_file} already exists; pass --overwrite to replace it")


def _written_by(folder: Path) -> str | None:
    try:
        return json.loads((folder / "report.json").read_text(encoding="utf-8")).get("written_by")
    except (OSError, ValueError, AttributeError):
        return WRITTEN_BY  # unreadable: not a report of ser train, keep it unless told


EVAL_LABEL_HINT = "map them with --map SOURCE=CLASS (repeatable; SOURCE= drops it) or --map-file FILE"


def evaluate(run_dir: str | os.PathLike, *, manifest: str | None = None, split: str = "test",
             roots: dict[str, str] | None = None, device: str | None = None,
             label_mapping: dict[str, str | None] | None = None, overwrite: bool = False,
             cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score the selected checkpoint of every run under ``run_dir`` on ``split`` (``train``/``valid``/``test``, or
    ``all`` = every usable utterance), optionally of another ``manifest``; writes ``<run>/eval/<name>/`` reports
    and returns ``{"runs": [...], "aggregate": {metric: {mean, std, values}}, ...}``.

    Another corpus (classification): its labels are mapped onto the model's classes
    (:func:`emotk.data.labels.match_labels`: the user's ``label_mapping`` ``{source: class or None}``, exact name,
    the run's label map, synonyms). Utterances whose label maps onto no class are dropped; the model's
    probabilities are renormalised over the shared classes (a class absent from the corpus is never predicted)
    and the metrics and confusion matrix cover the shared classes only. What was mapped and dropped is logged and
    kept as ``label_mapping`` in the result and in every report.

    overwrite: replace the reports of an earlier ``ser evaluate`` of the same ``name``; without it such a report (any
    run's, checked before anything is written) raises :class:`emotk.errors.OutputExistsError`.

    Features come from the per-utterance cache (:func:`emotk.models.ser.features.ensure_features`) under ``cache``,
    else the run's ``upstream.cache_dir``, else ``OUT/features``: utterances stored there (by training, an earlier
    evaluation, ``ser predict --cache``) are reused, only the others are encoded (and stored)."""
    from emotk.core.config import from_dict
    from emotk.core.io import sha256_file
    from emotk.core.runtime import device_name
    from emotk.metrics import aggregate
    from emotk.models.ser.config import SerConfig
    from emotk.models.ser.data import SerItem, prepare
    from emotk.models.ser.task import (
        FeatureStore,
        SerTask,
        drop_skipped,
        run_outputs,
        speaker_norm_info,
        speakers_of,
        write_eval,
    )
    from emotk.train.checkpoint import load_model_weights

    if split not in ("train", "valid", "test", "all"):
        raise UsageError(f"--split {split!r}: choose train, valid, test or all")
    if manifest is not None and not Path(manifest).is_file():
        raise DataError(f"manifest not found: {manifest}")
    runs = find_runs(run_dir)
    device = device_name(device)
    root = Path(run_dir)
    reports, entries = [], []
    cache_store: dict[str, Any] = {}
    name = split if manifest is None else f"{split}-{Path(manifest).stem}-{sha256_file(manifest)[:8]}"
    if label_mapping:
        from emotk.core.io import sha256_json

        name += f"-map{sha256_json(label_mapping)[:8]}"
    check_outputs(runs, root, name, overwrite)
    label_info: dict[str, Any] | None = None
    said_dropped = False
    for sub in track(runs, "ser evaluate", unit="runs"):
        meta = json.loads((sub / "run.json").read_text(encoding="utf-8"))
        data = {k: v for k, v in meta["config"].items() if k not in ("task", "runtime")}
        cfg = from_dict(SerConfig, data)
        if manifest is not None:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=str(manifest)))
        run_classes = meta.get("classes") or _parent_meta(sub).get("classes")
        match, override, dropped_protocol = None, None, None
        if cfg.task_type == "classification" and run_classes and (manifest is not None or label_mapping):
            match, override = _match_corpus(cfg, run_classes, label_mapping, roots)
            if not match.identity:
                # another label set: the target map restricts to the model's classes (data.classes is for training)
                cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, classes=None))
        try:
            prepared = prepare(cfg, cfg.data.manifest, roots=roots, label_map=override, hint=EVAL_LABEL_HINT)
        except DataError as e:
            if manifest is None or "is for dataset" not in str(e):
                raise
            # another corpus: the run's protocol does not apply; use the records' own split (or --split all)
            from emotk.data.protocols import find_protocol

            dropped_protocol = {"protocol": find_protocol(cfg.data.protocol).name, "fold": cfg.data.fold or None,
                                "reason": "the manifest holds another dataset"}
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, protocol="", fold=""))
            prepared = prepare(cfg, cfg.data.manifest, roots=roots, label_map=override, hint=EVAL_LABEL_HINT)
        if match is not None and not match.identity:
            if not match.shared:
                raise DataError(f"{cfg.data.manifest}: no label maps onto a class of the model "
                                f"({', '.join(run_classes)}); {EVAL_LABEL_HINT}")
            if label_info is None:
                log.warning(f"ser evaluate: {cfg.data.manifest}: {match.summary()}")
            label_info = match.to_dict()
        if cfg.task_type == "classification" and run_classes and prepared.classes != run_classes:
            unknown = sorted(set(prepared.targets.values()) - set(run_classes))
            if unknown:
                raise DataError(f"labels {unknown} of {cfg.data.manifest} are not classes of the model "
                                f"({', '.join(run_classes)}); {EVAL_LABEL_HINT}")
            prepared.classes = list(run_classes)
        if split == "all" and prepared.protocol is not None and dropped_protocol is None:
            dropped_protocol = {"protocol": prepared.protocol.name, "fold": cfg.data.fold or None,
                                "reason": "--split all scores every usable utterance"}
        if dropped_protocol is not None and not said_dropped:
            said_dropped = True
            log.info(f"ser evaluate: the run's protocol '{dropped_protocol['protocol']}' is not used "
                     f"({dropped_protocol['reason']}); " + ("scoring all of " if split == "all" else
                     "splitting by the records' own split field of ") + str(cfg.data.manifest))
        speakers = speakers_of(cfg, prepared)  # per-speaker: statistics from the evaluated speakers' utterances
        if split == "all":
            index = {c: i for i, c in enumerate(prepared.classes or [])}
            items = [SerItem(r["id"], index[prepared.targets[r["id"]]] if cfg.task_type == "classification"
                             else prepared.targets[r["id"]]) for r in prepared.manifest]
            splits = {"train": items, "valid": [], "test": [], "all": items}
        else:
            splits = prepared.splits(cfg.data.fold or None)
        key = str(cfg.feature_config()) + prepared.manifest.sha256
        if key not in cache_store:
            parent = _parent_dir(sub)
            cache_root = Path(cache or cfg.upstream.cache_dir or parent / "features")
            from emotk.models.ser.features import ensure_features

            feats, _ = ensure_features(prepared.manifest, cfg.feature_config(), cache_root, device=device)
            cache_store[key] = FeatureStore(feats)
        store = cache_store[key]
        splits = drop_skipped(splits, store)
        if not splits.get(split):
            raise DataError(f"{sub.name}: the {split} split is empty for {cfg.data.manifest}")
        counts = meta.get("class_counts")
        if counts and SerTask.needs_class_counts(cfg.loss.name) and len(counts) == len(prepared.classes or []):
            # the training split's counts, so a weighted loss is reported as during training
            cfg = dataclasses.replace(cfg, loss=dataclasses.replace(
                cfg.loss, options={**cfg.loss.options, "class_counts": counts}))
        task = SerTask(cfg, {**splits, "train": splits["train"] or splits[split]}, store,
                       classes=prepared.classes, target_names=prepared.target_names, speakers=speakers)
        model = task.make_model(stats=False)  # statistics and weights come from the checkpoint
        weights = load_model_weights(sub, model)
        outputs = run_outputs(task, model, task.dataset(split), device, cfg.train.batch_size)
        info = {"run": sub.name, "split": split, "fold": cfg.data.fold or None, "seed": cfg.train.seed,
                "checkpoint": str(weights.parent.relative_to(sub)), **prepared.inputs(),
                "config_hash": meta.get("config_hash"), **speaker_norm_info(cfg)}
        if dropped_protocol is not None:
            info["protocol_dropped"] = dropped_protocol
        if match is not None and not match.identity:
            outputs = restrict_to_shared(task, outputs, match.shared)
            info["label_mapping"] = label_info
            info["dropped"] = dict(sorted(prepared.dropped.items()))
        folder = sub / "eval" / name
        if folder.exists():  # checked above: ser train's own report, or overwrite
            shutil.rmtree(folder)
        report = write_eval(folder, task, outputs, {**info, "written_by": WRITTEN_BY})
        reports.append(report["metrics"])
        entries.append({"run": sub.name, "report": str((sub / "eval" / name / "report.json").relative_to(root))
                        if sub != root else str(Path("eval") / name / "report.json"), "metrics": report["metrics"]})
    result = {"run_dir": str(run_dir), "split": split, "manifest": str(manifest) if manifest else None,
              "runs": entries, "aggregate": aggregate(reports, keys=sorted(reports[0]))}
    if label_info is not None:
        result["label_mapping"] = label_info
    if runs[0] != root:  # an experiment folder: also keep the aggregate beside summary.json
        atomic_write_json(root / f"evaluate-{name}.json", result)
    return result


def _match_corpus(cfg: Any, classes: list[str], user: dict[str, str | None] | None,
                  roots: dict[str, str] | None) -> tuple[Any, Any]:
    """The labels of ``cfg.data.manifest`` matched onto the model's ``classes`` -> (LabelMatch, the LabelMap that
    :func:`prepare` uses: the run's own map when it already covers the corpus, else one built from the match)."""
    from emotk.data.labels import LabelMap, match_labels
    from emotk.data.manifest import Manifest
    from emotk.models.ser.data import find_label_map

    m = Manifest.load(cfg.data.manifest, roots=roots)
    counts: dict[str, int] = {}
    for rec in m:
        raw = rec.get(cfg.data.label_field)
        if raw is not None:
            counts[str(raw)] = counts.get(str(raw), 0) + 1
    base = None
    if cfg.data.label_map:
        try:
            base = find_label_map(cfg.data.label_map)
        except DataError:
            base = None
    match = match_labels(counts, classes, user, base=base)
    if match.identity and base is not None and base.classes == classes:
        return match, base
    name = f"{Path(cfg.data.manifest).stem}->model" if not match.identity else "model-classes"
    return match, LabelMap(name=name, classes=list(classes), map=dict(match.mapping))


def restrict_to_shared(task: Any, outputs: dict[str, Any], shared: list[str]) -> dict[str, Any]:
    """Keep the logits of the ``shared`` classes only (a softmax over them = the model's probabilities
    renormalised over the shared classes), re-index the targets, and make ``task`` score those classes."""
    import torch

    from emotk.losses import build_loss
    from emotk.models.ser.task import SerTask

    classes = list(task.classes)
    keep = [classes.index(c) for c in shared]
    new_index = {k: j for j, k in enumerate(keep)}
    target = torch.tensor([new_index[int(t)] for t in outputs["target"].tolist()], dtype=torch.long)
    if SerTask.needs_class_counts(task.cfg.loss.name):
        options = dict(task.cfg.loss.options)
        counts = options.get("class_counts") or task.class_counts()
        options["class_counts"] = [counts[k] for k in keep]
        task.loss = build_loss(task.cfg.loss.name, **options)
    task.classes = list(shared)
    return {"outputs": outputs["outputs"][:, keep], "target": target, "ids": outputs["ids"]}


def _parent_dir(sub: Path) -> Path:
    return sub.parent.parent if sub.parent.name == "runs" else sub


def _parent_meta(sub: Path) -> dict[str, Any]:
    p = _parent_dir(sub) / "run.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() and p.parent != sub else {}
    except json.JSONDecodeError:
        return {}
