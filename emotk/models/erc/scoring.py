"""ERC scoring: validation metrics, reports and per-turn predictions of any HCAM stage (conversations or single
utterances), shared by training (:mod:`.task`, :mod:`.finetune`) and ``erc evaluate`` (:mod:`.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from emotk.core.io import atomic_write_json, atomic_write_text
from emotk.errors import DataError

IGNORE = -100


class ErcScoring:
    """Validation metrics and reports over per-group outputs (``outputs`` / ``target`` / ``ids`` lists, a group =
    a conversation, or one utterance for stage I fine-tuning); ``classes`` is the label list."""

    classes: list[str]

    def validation_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        return self.metrics(outputs)["metrics"]

    def metrics(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Scalar ``metrics`` over every labelled turn (selection, logs) plus the full ``report``."""
        from emotk.losses import cross_entropy
        from emotk.metrics import classification_report

        logits, target = flat_outputs(outputs)
        keep = target != IGNORE
        if not bool(keep.any()):
            raise DataError("no labelled turn to score in this split")
        report = classification_report(target[keep].numpy(), logits[keep].argmax(-1).numpy(), labels=self.classes)
        metrics = {k: float(report[k]) for k in ("weighted_f1", "macro_f1", "accuracy", "balanced_accuracy")}
        metrics["loss"] = float(cross_entropy(logits, target))
        return {"metrics": metrics, "report": report}


class Scorer(ErcScoring):
    """:class:`ErcScoring` for a class list alone (``erc evaluate`` of stage-I exports)."""

    def __init__(self, classes: list[str]) -> None:
        self.classes = list(classes)



def flat_outputs(outputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-conversation ``outputs`` / ``target`` lists -> (logits (N, C), target (N,)) over every turn."""
    logits = torch.cat([torch.as_tensor(o).float().cpu() for o in outputs["outputs"]])
    target = torch.cat([torch.as_tensor(t).long().cpu() for t in outputs["target"]])
    return logits, target


def write_eval(folder: Path, task: ErcScoring, outputs: dict[str, Any], info: dict[str, Any],
               dialogues: dict[str, str]) -> dict[str, Any]:
    """``report.json``, ``predictions.jsonl`` (one line per turn: id, dialogue, label when known, prediction,
    probabilities) and the confusion matrix (JSON + PNG) of one split. Returns the report."""
    from emotk.metrics import confusion_matrix_png

    folder.mkdir(parents=True, exist_ok=True)
    scored = task.metrics(outputs)
    lines = []
    for ids, logits, target in zip(outputs["ids"], outputs["outputs"], outputs["target"]):
        probs = torch.softmax(torch.as_tensor(logits).float(), dim=-1).tolist()
        for uid, p, t in zip(ids, probs, torch.as_tensor(target).tolist()):
            row: dict[str, Any] = {"id": uid, "dialogue": dialogues.get(uid)}
            if t != IGNORE:
                row["label"] = task.classes[t]
            row["prediction"] = task.classes[max(range(len(p)), key=p.__getitem__)]
            row["probabilities"] = {c: round(v, 6) for c, v in zip(task.classes, p)}
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "predictions.jsonl", "".join(lines))
    report = {**info, "num_turns": len(lines), "metrics": scored["metrics"], "report": scored["report"],
              "confusion_matrix": "confusion_matrix.json"}
    cm = scored["report"]["confusion_matrix"]
    atomic_write_json(folder / "confusion_matrix.json", {"classes": task.classes, "rows": "true",
                                                         "columns": "predicted", "matrix": cm})
    confusion_matrix_png(cm, task.classes, folder / "confusion_matrix.png",
                         title=f"{info.get('split', '')} {info.get('run', '')}".strip())
    atomic_write_json(folder / "report.json", report)
    return report
