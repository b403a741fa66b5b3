"""ERC training: the TrainTask and ``emotk erc train`` (one HCAM stage, every seed, test reports, summary).

:class:`ErcTask` trains :class:`emotk.models.erc.model.ErcNet` on whole dialogues: dataset items are
:class:`emotk.data.conversations.Conversation` objects, a batch is ``train.batch_size`` conversations padded by
:func:`emotk.data.conversations.collate_conversations` with the frozen stage-I vectors of every turn. The loss is
β·CE + (1−β)·SupCon over the labelled turns of the batch (:func:`emotk.losses.ce_supcon`); validation metrics are
computed over every labelled turn of the split (``weighted_f1`` selects the checkpoint, as in the thesis).
With ``embed.<m>.finetune`` (model.stage 1) the run trains HCAM's fine-tuned stage I instead
(:class:`emotk.models.erc.finetune.ErcUtteranceTask`: encoder + head on single utterances, same layout and reports).

:func:`train` (``emotk erc train``). Layout of an output folder ``OUT``::

    OUT/run.json, config.yaml, log.txt     the experiment (resolved config, inputs' hashes, plan)
    OUT/features/set-<ids12>/<kind>-<h12>/ stage-I arrays per utterance (``erc embed``; shared by every seed)
    OUT/runs/seed<S>/                      one run per seed: run.json, metrics.jsonl, ckpt/, export/,
                                           eval/{valid,test}/ (report.json, predictions.jsonl, confusion matrix)
    OUT/summary.json                       test and validation metrics: mean ± sample std over seeds, per run
    OUT/export/                            the inference bundle of the run with the best validation score

``--resume`` skips finished seeds and continues an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotk.core.io import atomic_write_json
from emotk.core.log import get_logger
from emotk.errors import DataError, UsageError
from emotk.models.erc.model import ErcDims, ErcNet
from emotk.models.erc.scoring import ErcScoring, write_eval
from emotk.train.task import StepState, TrainTask

log = get_logger("erc")

RESULT = "result.json"
SUMMARY = "summary.json"
class ErcTask(ErcScoring, TrainTask):
    """One HCAM stage on frozen stage-I vectors. splits: ``{"train", "valid", "test"}`` -> ConversationSet;
    vectors: ``{modality: {utterance id: (D,) vector}}``; classes: the label list."""

    def __init__(self, cfg: Any, splits: dict[str, Any], vectors: dict[str, dict[str, np.ndarray]],
                 classes: list[str]) -> None:
        from emotk.data.conversations import ConversationCollator

        self.cfg = cfg
        self.splits = splits
        self.classes = list(classes)
        mods = list(cfg.model.modalities)
        inputs = {}
        for m in mods:
            if not vectors.get(m):
                raise DataError(f"no stage-I '{m}' vectors: run `emotk erc embed` (or check embed.{m})")
            inputs[m] = int(np.asarray(next(iter(vectors[m].values()))).shape[-1])
        self.dims = ErcDims(inputs=inputs, num_classes=len(self.classes))
        self.collator = ConversationCollator({m: vectors[m] for m in mods})
        if len(self.classes) < 2:
            raise DataError(f"ERC needs at least 2 classes, got {self.classes}")

    # ---- hooks -----------------------------------------------------------------------------------------------
    def build_model(self) -> ErcNet:
        return ErcNet(self.dims, self.cfg.model)

    def train_dataset(self) -> Any:
        return self.dataset("train")

    def valid_dataset(self) -> Any:
        return self.dataset("valid")

    def dataset(self, split: str) -> Any:
        """The conversations of ``split`` as a dataset; None when the split has none."""
        from emotk.data.conversations import ConversationDataset

        convs = self.splits.get(split)
        return ConversationDataset(convs) if convs is not None and len(convs) else None

    def collate(self, items: list) -> dict[str, Any]:
        return self.collator(items)

    def item_weights(self, dataset: Any) -> list[int]:
        """A conversation weighs its labelled turns (the loss is a mean over labelled turns), so a step's gradient
        is the same however its conversations are split over processes or accumulation steps."""
        return [conv.num_labelled for conv in dataset.conversations]

    def loss(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        from emotk.losses import ce_supcon

        c = self.cfg.loss
        return ce_supcon(logits.float(), labels, embedding.float(), beta=c.beta, temperature=c.temperature,
                         form=c.form, mask=mask)

    def training_step(self, model: Any, batch: dict[str, Any], state: StepState) -> dict:
        logits, embedding = model(batch["features"], batch["mask"], batch["speaker"])
        return {"loss": self.loss(logits, embedding, batch["labels"], batch["mask"])}

    def validation_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        logits, _ = model(batch["features"], batch["mask"], batch["speaker"])
        rows = batch["restore"].tolist()  # back to the order of the dataset items
        lengths = batch["lengths"].tolist()
        return {"outputs": [logits[r, :lengths[r]].float() for r in rows],
                "target": [batch["labels"][r, :lengths[r]] for r in rows],
                "ids": [batch["ids"][r] for r in rows]}

# ---- the experiment: seeds -----------------------------------------------------------------------------------
def prepare(cfg: Any, manifest_path: str, roots: dict[str, str] | None = None,
            need_train: bool = True) -> dict[str, Any]:
    """Load the manifest, check it, and split it into conversations: ``{"manifest", "splits", "classes",
    "inputs"}`` (inputs: the manifest's and protocol's hashes)."""
    from emotk.core.io import sha256_file
    from emotk.data.conversations import conversation_splits
    from emotk.data.manifest import Manifest

    manifest = Manifest.load(manifest_path, roots=roots) if roots else Manifest.load(manifest_path)
    need_text = any(cfg.embed.get(m) is not None and cfg.embed.get(m).kind == "text" and not cfg.embed.get(m).from_run
                    for m in cfg.model.modalities)
    if "speech" in cfg.model.modalities and not cfg.embed.speech.from_run and cfg.embed.speech.kind != "text":
        manifest.require_audio("erc train with the speech modality")
    label_map = _label_map(cfg, manifest)
    splits = conversation_splits(manifest, cfg.data.protocol or None, cfg.data.fold or None,
                                 label_field=cfg.data.label_field, label_map=label_map,
                                 classes=cfg.data.classes, need_text=need_text)
    if need_train and not len(splits["train"]):
        raise DataError(f"{manifest_path}: protocol '{cfg.data.protocol}' gives no training conversation")
    inputs = {"manifest": str(manifest_path), "manifest_sha256": sha256_file(manifest_path),
              "protocol": cfg.data.protocol or "manifest-split"}
    classes = next(list(s.classes) for s in splits.values())  # one class list for every split
    return {"manifest": manifest, "splits": splits, "classes": classes, "inputs": inputs}


def _label_map(cfg: Any, manifest: Any) -> Any:
    """The label map of ``data.label_map`` (a committed name or a file); empty: the dataset's committed
    ``label_map.json`` when the manifest holds one dataset that has one, else None (labels as they are)."""
    from emotk.data.labels import find_label_map

    datasets = sorted({str(r.get("dataset")) for r in manifest.records if r.get("dataset")})
    dataset = datasets[0] if len(datasets) == 1 else None
    if cfg.data.label_map:
        return find_label_map(cfg.data.label_map, dataset)
    try:
        return find_label_map("", dataset) if dataset else None
    except DataError:
        return None


def train(resolved: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
          skip_bad: bool = False, roots: dict[str, str] | None = None,
          argv: list[str] | None = None) -> dict[str, Any]:
    """Train every seed of ErcConfig ``resolved.config`` under ``out``; returns the summary (see the module
    docstring). Raises :class:`emotk.train.signals.Interrupted` (exit code 3) when a signal stops a run."""
    from emotk.core.runtime import keep_threads

    with keep_threads():
        return _train(resolved, out, resume=resume, overwrite=overwrite, skip_bad=skip_bad, roots=roots, argv=argv)


def _train(resolved: Any, out: str | os.PathLike, *, resume: bool, overwrite: bool, skip_bad: bool,
           roots: dict[str, str] | None, argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.runs import RunDir
    from emotk.models.erc.config import finetuned
    from emotk.models.erc.embed import ensure_embeddings, load_vectors
    from emotk.train import distributed as dist

    cfg = resolved.config
    if not cfg.data.manifest:
        raise UsageError("no manifest: pass --data MANIFEST.jsonl (or set data.manifest)")
    runtime, _ = dist.start(resolved.runtime)  # device, process group, threads (extraction too)
    device = runtime.device
    out = Path(out)
    prepared = prepare(cfg, cfg.data.manifest, roots)  # every input checked before the output folder exists
    if finetuned(cfg) is not None:  # the encoder to fine-tune exists and fits its head
        from emotk.models.erc.finetune import check_encoder

        check_encoder(cfg.embed.get(finetuned(cfg)), f"embed.{finetuned(cfg)}")
    seeds = [cfg.train.seed + k for k in range(cfg.seeds)]
    inputs = prepared["inputs"]
    if dist.is_main():
        parent = RunDir.create(out, resolved, overwrite=overwrite, resume=resume, inputs=inputs, device=device,
                               argv=argv)
        parent.update(plan=[{"seed": s, "run": f"runs/seed{s}"} for s in seeds], classes=prepared["classes"],
                      data={k: v.summary() for k, v in prepared["splits"].items()})
    dist.barrier()
    cache_root = Path(cfg.embed.cache_dir) if cfg.embed.cache_dir else out / "features"
    summaries: dict[str, Any] = {}
    vectors: dict[str, Any] = {}
    if finetuned(cfg) is None:  # a fine-tuned stage I reads the utterances themselves, not stage-I vectors
        if dist.is_main():
            summaries = ensure_embeddings(cfg, prepared["manifest"], cache_root, device=device, skip_bad=skip_bad)
        dist.barrier()
        if not dist.is_main():
            summaries = ensure_embeddings(cfg, prepared["manifest"], cache_root, device=device, skip_bad=skip_bad,
                                          progress=False)
        ids = [u for split in prepared["splits"].values() for u in split.ids]
        vectors = load_vectors(cfg, summaries, ids)
    results = []
    for seed in seeds:
        sub = out / "runs" / f"seed{seed}"
        if resume and (sub / RESULT).is_file():
            results.append(json.loads((sub / RESULT).read_text(encoding="utf-8")))
            log.info(f"erc: seed{seed} already finished; skipped")
            continue
        results.append(_train_one(resolved, cfg, prepared, vectors, sub, seed, runtime, resume, argv))
    summary = summarise(cfg, prepared, results, resolved.hash)
    if dist.is_main():
        best = summary.get("export", {}).get("from")
        if best:
            target = out / "export"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(out / "runs" / best / "export", target)
        atomic_write_json(out / SUMMARY, summary)
    dist.barrier()
    return summary


def _train_one(resolved: Any, cfg: Any, prepared: dict[str, Any], vectors: dict[str, Any], sub: Path, seed: int,
               runtime: Any, resume: bool, argv: list[str] | None) -> dict[str, Any]:
    from emotk.core.config import Resolved
    from emotk.core.runs import RunDir
    from emotk.models.erc.config import finetuned
    from emotk.models.erc.export import write_export
    from emotk.train import distributed as dist
    from emotk.train.trainer import Trainer

    name = f"seed{seed}"
    cfg = dataclasses.replace(cfg, seeds=1, train=dataclasses.replace(cfg.train, seed=seed))
    sub_resolved = Resolved(task=resolved.task, config=cfg, runtime=resolved.runtime,
                            sources=[*resolved.sources, f"run {name}: train.seed={seed}"])
    continuing = resume and (sub / "run.json").is_file()
    if dist.is_main():
        run = RunDir.create(sub, sub_resolved, resume=continuing, overwrite=not continuing, inputs=prepared["inputs"],
                            seed=seed, device=runtime.device, argv=argv)
    dist.barrier()
    if not dist.is_main():
        run = RunDir.open(sub)
    modality = finetuned(cfg)
    if modality is None:
        task: Any = ErcTask(cfg, prepared["splits"], vectors, prepared["classes"])
    else:  # HCAM's fine-tuned stage I: encoder + head on single utterances
        from emotk.models.erc.finetune import ErcUtteranceTask

        task = ErcUtteranceTask(cfg, prepared["splits"], prepared["manifest"], prepared["classes"], modality)
    sizes = {k: len(v) for k, v in prepared["splits"].items()}
    log.info(f"erc: run {name}: stage {cfg.model.stage} ({', '.join(cfg.model.modalities)}), dialogues "
             f"{sizes.get('train', 0)} train / {sizes.get('valid', 0)} valid / {sizes.get('test', 0)} test")
    trainer = Trainer(cfg.train, task, run, runtime)
    fit = trainer.fit(resume=continuing)
    best = fit.get("best")
    result: dict[str, Any] = {"run": name, "seed": seed, "stopped": fit.get("stopped"), "steps": fit.get("steps"),
                              "best": json.loads(json.dumps(best, default=str)) if best else None,
                              "late_best": bool(fit.get("late_best")), "valid": None, "test": None}
    dialogues = {u: c.name for split in prepared["splits"].values() for c in split for u in c.ids}
    info = {"run": name, "seed": seed, **prepared["inputs"], "config_hash": sub_resolved.hash,
            "stage": cfg.model.stage, "modalities": list(cfg.model.modalities), "context": cfg.model.context}
    for split in ("valid", "test"):
        dataset = task.dataset(split)
        if dataset is None:
            continue
        evaluated = trainer.evaluate(dataset, split=split)
        if dist.is_main():
            report = write_eval(sub / "eval" / split, task, evaluated["outputs"], {**info, "split": split}, dialogues)
            result[split] = report["metrics"]
    if dist.is_main():
        write_export(sub / "export", trainer.model, cfg, task.dims, prepared["classes"],
                     extra={"source_run": name, "seed": seed, "config_hash": sub_resolved.hash,
                            "valid": result["valid"], "test": result["test"], **prepared["inputs"]})
        atomic_write_json(sub / RESULT, result)
    dist.barrier()
    return result


def summarise(cfg: Any, prepared: dict[str, Any], results: list[dict[str, Any]], config_hash: str) -> dict[str, Any]:
    """Mean ± sample std (ddof 1, as published ERC tables over seeds) of the test and validation metrics."""
    from emotk.metrics import aggregate

    summary: dict[str, Any] = {
        "task": "erc.hcam", "config_hash": config_hash, **prepared["inputs"], "classes": prepared["classes"],
        "stage": cfg.model.stage, "modalities": list(cfg.model.modalities), "context": cfg.model.context,
        "compat": cfg.model.compat, "joint": bool(getattr(cfg.model, "joint", False)),
        "embed": {m: dataclasses.asdict(cfg.embed.get(m)) for m in cfg.model.modalities},
        "runs_total": len(results), "seeds": [r["seed"] for r in results],
        "std_kind": "sample std (ddof 1) over seeds" if len(results) > 1 else "one run",
    }
    for split in ("test", "valid"):
        reports = [r[split] for r in results if r.get(split)]
        if reports:
            summary[split] = aggregate(reports, keys=sorted(reports[0]), ddof=1 if len(reports) > 1 else 0)
    summary["split_reported"] = "test" if "test" in summary else ("valid" if "valid" in summary else None)
    summary["runs"] = [{k: r.get(k) for k in ("run", "seed", "stopped", "valid", "test")} for r in results]
    late = [r["run"] for r in results if r.get("late_best")]
    if late:
        summary["late_best_runs"] = late
    select, mode = cfg.train.select_metric, cfg.train.select_mode
    ranked = [r for r in results if r.get("valid") and select in r["valid"]]
    best = ((max if mode == "max" else min)(ranked, key=lambda r: r["valid"][select]) if ranked
            else (results[0] if results else None))
    if best is not None:
        summary["export"] = {"path": "export", "from": best["run"],
                             "chosen_by": f"validation {select}" if ranked else "first run (no validation split)"}
    return summary
