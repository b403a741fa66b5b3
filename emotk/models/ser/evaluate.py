"""``ser evaluate``: score the selected checkpoint of every run of a finished ``ser train`` folder again.

Reports land beside each run (``<run>/eval/<name>/``: report.json, predictions.jsonl, confusion matrix), where
``name`` is the split, or the split plus the other manifest's name and hash; the aggregate over runs is returned
(and, for an experiment folder, written as ``OUT/evaluate-<name>.json``). Another corpus's labels are mapped onto
the model's classes (names, synonyms, ``--map``) and only the shared classes are scored (see :func:`evaluate`);
a user mapping adds ``-map<hash8>`` to ``name``. A report of an earlier ``ser evaluate`` (or its aggregate) is never
replaced without ``overwrite``; ``ser train``'s own ``eval/valid`` and ``eval/test`` may be rescored.

:func:`predict_and_score` is ``ser predict --score``: an export's predictions over audio / manifests, scored with
the same metrics and report files (the labels mapped the same way), into a report folder of its own.
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
from emotk.core.runs import report_written_by
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
        made_by = report_written_by(folder)
        if folder.exists() and (name not in ("valid", "test") or made_by in (WRITTEN_BY, None)):
            raise OutputExistsError(f"{folder} already holds a `ser evaluate` report; pass --overwrite to replace it")
    aggregate_file = root / f"evaluate-{name}.json"
    if runs[0] != root and aggregate_file.exists():
        raise OutputExistsError(f"{aggregate_file} already exists; pass --overwrite to replace it")


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
    from emotk.data.labels import LabelMap, find_label_map, match_labels
    from emotk.data.manifest import Manifest

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


# ---- ser predict --score --------------------------------------------------------------------------------------
PREDICT_WRITTEN_BY = "ser predict --score"
UNLABELED = ("error", "skip")


def report_folder(out: str | os.PathLike, report: str | os.PathLike | None = None) -> Path:
    """Where ``ser predict --score`` writes its report: ``report``, else beside ``out`` as ``<out stem>-report/``
    (``preds.jsonl`` -> ``preds-report/``)."""
    if report is not None:
        return Path(report)
    out = Path(out)
    return out.with_name(f"{out.stem}-report")


class ExportScorer:
    """What :func:`emotk.models.ser.task.write_eval` and :func:`restrict_to_shared` need of a SerTask, for an
    export: its classes (or targets), the training run's loss, and :meth:`SerTask.metrics` itself.

    loss: ``{"name", "options"}`` of the training run (``{}``: the default of the task type, ``ce`` / ``ccc``);
    class_counts: the training split's counts, for losses that weight by them (None: uniform)."""

    def __init__(self, predictor: Any, loss: dict[str, Any], class_counts: list[int] | None) -> None:
        import types

        from emotk.losses import build_loss
        from emotk.models.ser.task import SerTask

        self.regression = predictor.regression
        self.classes = list(predictor.classes) if predictor.classes else None
        self.target_names = list(predictor.target_names) if predictor.target_names else None
        name = str(loss.get("name") or ("ccc" if self.regression else "ce"))
        options = dict(loss.get("options") or {})
        self._counts = list(class_counts) if class_counts else [1] * len(self.classes or [])
        if SerTask.needs_class_counts(name) and "class_counts" not in options:
            options["class_counts"] = self._counts
        self.cfg = types.SimpleNamespace(loss=types.SimpleNamespace(name=name, options=options))
        self.loss = build_loss(name, **options)

    def class_counts(self) -> list[int]:
        return list(self._counts)

    def metrics(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """:meth:`emotk.models.ser.task.SerTask.metrics` (the same metrics and report as ``ser evaluate``)."""
        from emotk.models.ser.task import SerTask

        return SerTask.metrics(self, outputs)  # type: ignore[arg-type]


def predict_and_score(model: str | os.PathLike, inputs: list[str], out: str | os.PathLike, *,
                      report: str | os.PathLike | None = None, overwrite: bool = False, unlabeled: str = "error",
                      skip_bad: bool = False, batch_size: int = 16, device: str = "cpu",
                      roots: dict[str, str] | None = None, stdin: Any = None, label_field: str | None = None,
                      label_mapping: dict[str, str | None] | None = None,
                      cache: str | os.PathLike | bool | None = None) -> dict[str, Any]:
    """``ser predict --score``: predict every input into ``out`` (JSONL, the schema of
    :mod:`emotk.models.ser.infer`) and score the predictions against the inputs' labels as ``ser evaluate`` does,
    into :func:`report_folder` (report.json, predictions.jsonl, confusion matrix JSON + PNG).

    Labels are mapped onto the model's classes as ``ser evaluate --data`` maps another corpus (names, the training
    run's label map, synonyms, ``label_mapping``); inputs whose label maps onto no class are dropped from the score
    and the probabilities renormalised over the shared classes (``label_mapping`` in the report says what). An
    input without a label (an audio path, a record without the label field / a target) is a DataError naming it
    (``file:line``) before any audio is read, or with ``unlabeled="skip"`` is predicted but not scored (counted as
    ``unscored``). ``out`` and the report folder are checked before any work: OutputExistsError without
    ``overwrite``. ``cache``: the feature cache as for :func:`emotk.models.ser.infer.predict` (a root to read and
    add to; None: the model's ``ser train`` cache, read only; False: none). Returns ``{"predictions", "report",
    "predicted", "scored", "unscored", "skipped", "metrics", "label_mapping"?}``."""
    import torch

    from emotk.core.io import atomic_path, check_writable, remove_stale_temps, sha256_file
    from emotk.data.labels import match_labels
    from emotk.models.ser.infer import TruthReader, bad_input_message, iter_inputs, iter_outputs, load_predictor
    from emotk.models.ser.task import write_eval

    if unlabeled not in UNLABELED:
        raise UsageError(f"--unlabeled {unlabeled!r}: choose {' or '.join(UNLABELED)}")
    out = Path(out)
    folder = report_folder(out, report)
    if folder.resolve() == out.resolve():
        raise UsageError(f"--report {folder}: the report folder cannot be the predictions file")
    check_writable(out, overwrite)
    if folder.exists() and not overwrite:
        raise OutputExistsError(f"{folder} already exists (a report of `ser predict --score`?); "
                                "pass --overwrite to replace it")
    remove_stale_temps(out)  # what a run killed at the rename left beside the predictions
    predictor = load_predictor(model, device=device, cache=cache)
    truth = TruthReader(predictor, label_field, label_mapping)
    items = list(iter_inputs(inputs, roots=roots, stdin=stdin))  # paths and labels only: cheap, checked up front
    counts: dict[str, int] = {}
    unscored = labelled = 0
    bad = [item for item in items if item.get("error") is not None]
    if bad and not skip_bad:  # the first bad input, named, before any audio is read
        raise DataError(f"{bad_input_message(bad[0])} (pass --skip-bad to skip bad inputs)")
    for item in items:
        if item.get("error") is not None:
            continue  # skipped (skip_bad): reported with the other skipped inputs
        fields = truth.fields(item)
        if "label" not in fields and "target" not in fields and "source_label" not in fields:
            if unlabeled == "error":
                raise DataError(f"{item['where']}: input '{item['id']}' has no {truth.what()}; --score scores every "
                                "input against its truth (--unlabeled skip predicts it without scoring it)")
            unscored += 1
            continue
        labelled += 1
        if not truth.regression:
            raw = truth.raw_label(item)
            counts[raw] = counts.get(raw, 0) + 1
    if not labelled:
        raise DataError(f"ser predict --score: no input has a {truth.what()} to score")
    if unscored:
        log.warning(f"ser predict --score: {unscored} input(s) without a {truth.what()} are predicted, not scored")
    match = None
    if not truth.regression:
        match = match_labels(counts, truth.classes, truth.user, base=truth.base)
        if not match.shared:
            raise DataError(f"ser predict --score: no label of the inputs maps onto a class of the model "
                            f"({', '.join(truth.classes)}); {EVAL_LABEL_HINT}")
        if not match.identity:
            log.warning(f"ser predict --score: {match.summary()}")
    rows, targets, ids, skipped = [], [], [], []
    predicted = 0
    with atomic_path(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for item, row, reason in iter_outputs(predictor, items, skip_bad=skip_bad, batch_size=batch_size):
                if reason is not None:
                    skipped.append({"id": item["id"], "skipped": reason})
                    continue
                fields = truth.fields(item)
                f.write(json.dumps({"id": item["id"], **fields, **predictor.format(row)}, ensure_ascii=False) + "\n")
                predicted += 1
                if "target" in fields:
                    targets.append([fields["target"][n] for n in truth.target_names])
                elif "label" in fields:
                    targets.append(truth.classes.index(fields["label"]))
                else:
                    continue
                rows.append(row)
                ids.append(item["id"])
        if not rows:
            raise DataError("ser predict --score: no input could be scored (every labelled input was skipped)")
        outputs = {"outputs": torch.stack(rows), "target": torch.tensor(targets), "ids": ids}
        run = predictor.training_run
        loss = predictor.run_config("loss")
        scorer = ExportScorer(predictor, loss, run.get("class_counts"))
        info: dict[str, Any] = {
            "model": str(predictor.folder), "source_run": predictor.meta.get("source_run"),
            "config_hash": predictor.meta.get("config_hash"), "inputs": [str(x) for x in inputs],
            "manifest_sha256": {str(x): sha256_file(x) for x in inputs if str(x).endswith(".jsonl")},
            "predictions": str(out), "predicted": predicted, "unscored": unscored, "skipped": len(skipped),
            "loss": {"name": scorer.cfg.loss.name, "from": "training run" if loss else
                     "default (the export's training run was not found beside it)"}}
        if not truth.regression:
            info["label_field"] = truth.label_field
        if match is not None and not match.identity:
            outputs = restrict_to_shared(scorer, outputs, match.shared)
            info["label_mapping"] = match.to_dict()
        if folder.exists():  # checked above: overwrite
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        written = write_eval(folder, scorer, outputs, {**info, "written_by": PREDICT_WRITTEN_BY})
    result = {"predictions": str(out), "report": str(folder / "report.json"), "predicted": predicted,
              "scored": written["num_samples"], "unscored": unscored, "skipped": skipped,
              "metrics": written["metrics"]}
    if "label_mapping" in info:
        result["label_mapping"] = info["label_mapping"]
    return result
