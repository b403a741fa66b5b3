"""ERC inference: ``emotk erc predict`` over whole dialogues, or turn by turn (``--online``).

:class:`ErcPredictor` loads an export (:func:`emotk.models.erc.export.load_export`) and builds, from its ``embed``
section, the same stage-I front end training used (a ``features extract`` extractor + the same pooling), so a new
turn is embedded exactly as the training turns were. Output, one JSON object per turn: ``id``, ``dialogue``,
``label`` (the truth, only when the record has a label that is, or maps onto, a model class), ``prediction``,
``probabilities`` ``{class: p}``, ``model`` (the export's config hash).

Batch mode (:func:`predict`) reads a conversation manifest and runs each dialogue in one pass. Online mode
(:class:`OnlineSession`) takes turns one at a time, of any interleaving of dialogues, keeps each dialogue's
recurrent state and past attention rows (:meth:`emotk.models.erc.model.ErcNet.step`), and predicts every turn as
soon as it arrives, at a cost that does not grow with the number of dialogues; it needs a model trained with
``model.context: causal`` (a turn's prediction then depends only on the past), and its predictions equal the batch
ones.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from emotk.errors import DataError, UsageError

__all__ = ["ErcPredictor", "OnlineSession", "predict"]


class ErcPredictor:
    """An ERC export ready to embed turns and predict dialogues (``device``: where the network runs)."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "cpu") -> None:
        from emotk.core.config import from_dict
        from emotk.models.erc.config import ErcEmbed
        from emotk.models.erc.export import load_export

        self.device = torch.device(device)
        self.model, self.meta, self.folder = load_export(model_dir, str(self.device))
        self.classes: list[str] = list(self.meta["classes"])
        self.modalities: list[str] = list(self.meta["model"]["modalities"])
        # stage I has no context: a turn's prediction never depends on the others (online == batch)
        self.causal = self.meta["model"].get("context") == "causal" or int(self.meta["model"]["stage"]) == 1
        self.finetuned = bool(self.meta.get("finetune"))  # a fine-tuned stage I: encoder + head on each turn
        self.embed = {m: from_dict(ErcEmbed, self.meta["embed"][m], prefix=f"embed.{m}.") for m in self.modalities}
        self.label_field = self.meta.get("label_field") or "emotion"
        self.label_map = self._label_map()
        self._fns: dict[str, Any] = {}
        # hierarchical models: a modality whose vectors are an earlier stage's turn embeddings (embed.from_run)
        self.sources = {m: ErcPredictor(e.from_run, device=str(self.device))
                        for m, e in self.embed.items() if e.from_run}
        if self.causal and any(not p.causal for p in self.sources.values()):
            raise DataError(f"{self.folder}: a causal model built on a non-causal earlier stage (embed.from_run) "
                            "would see the future; train every stage with model.context=causal")

    def _label_map(self) -> Any:
        name = self.meta.get("label_map")
        if not name:
            return None
        from emotk.data.labels import find_label_map

        try:
            return find_label_map(name)
        except DataError:
            return None

    # ---- stage I ----------------------------------------------------------------------------------------------
    def embed_turns(self, records: list[dict[str, Any]]) -> dict[str, list[np.ndarray]]:
        """Turn records -> ``{modality: [one (D,) vector per record]}`` through the training front end."""
        from emotk.core.audio import SAMPLE_RATE
        from emotk.data.audio import load_audio
        from emotk.features.extract import get_extractor
        from emotk.models.erc.embed import ARRAYS, embed_config, pool

        out: dict[str, list[np.ndarray]] = {}
        for mod in self.modalities:
            if mod in self.sources or self.finetuned:
                continue  # an earlier stage's embeddings: they need the dialogue (see dialogue_outputs)
            entry = self.embed[mod]
            spec = get_extractor(entry.kind)
            if mod not in self._fns:
                self._fns[mod] = spec.build(embed_config(entry), str(self.device))
            if spec.input == "records":
                items: list[Any] = records
            else:
                missing = [r for r in records if not r.get("path")]
                if missing:
                    raise DataError(f"turn '{missing[0].get('id')}' has no 'path': the {mod} model needs audio")
                items = [load_audio(r["path"], sr=SAMPLE_RATE, start=r.get("start"), end=r.get("end"))
                         for r in records]
            arrays = (self._fns[mod](items, [str(r.get("id")) for r in records]) if spec.pass_ids
                      else self._fns[mod](items))
            out[mod] = [pool(entry, a[ARRAYS[entry.kind]]) for a in arrays]
        return out

    # ---- the network --------------------------------------------------------------------------------------------
    def logits(self, vectors: dict[str, list[np.ndarray]], speakers: list[int]) -> torch.Tensor:
        """One dialogue's turn vectors (``{modality: [T vectors]}``) and speaker indices -> (T, C) logits."""
        return self._forward(vectors, speakers)[0]

    def _forward(self, vectors: dict[str, Any], speakers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        t = len(speakers)
        feats = {m: torch.as_tensor(np.stack([np.asarray(v) for v in vectors[m]]), dtype=torch.float32,
                                    device=self.device)[None] for m in self.modalities}
        mask = torch.ones(1, t, dtype=torch.bool, device=self.device)
        speaker = torch.as_tensor(speakers, dtype=torch.long, device=self.device)[None]
        with torch.no_grad():
            logits, embedding = self.model(feats, mask, speaker)
        return logits[0].float().cpu(), embedding[0].float().cpu()

    def dialogue_outputs(self, records: list[dict[str, Any]], speakers: list[int]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """One whole dialogue (turn records in order, speaker indices) -> (logits (T, C), embeddings (T, E)),
        embedding its turns first (earlier stages' models run over the dialogue for ``from_run`` modalities)."""
        if self.finetuned:
            return self.utterance_outputs(records)
        vectors: dict[str, Any] = self.embed_turns(records)
        for mod, source in self.sources.items():
            vectors[mod] = list(source.dialogue_outputs(records, speakers)[1])
        return self._forward(vectors, speakers)

    def step_turn(self, record: dict[str, Any], speaker: int, state: Any = None
                  ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Online: one new turn of a dialogue -> (logits (C,), embedding, state); ``state`` None at its first turn.
        Causal models only; earlier stages (``from_run``) advance with their own states."""
        if self.finetuned:
            logits, embedding = self.utterance_outputs([record])
            return logits[0], embedding[0], None
        state = state or {"net": None, "sources": {}}
        vectors = self.embed_turns([record])
        feats = {m: torch.as_tensor(vectors[m][0], dtype=torch.float32, device=self.device) for m in vectors}
        for mod, source in self.sources.items():
            _, emb, state["sources"][mod] = source.step_turn(record, speaker, state["sources"].get(mod))
            feats[mod] = emb.to(self.device)
        with torch.no_grad():
            logits, embedding, state["net"] = self.model.step(feats, speaker, state["net"])
        return logits.float().cpu(), embedding.float().cpu(), state

    def utterance_outputs(self, records: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine-tuned stage I: each turn alone through encoder + head -> (logits (T, C), embeddings (T, E))."""
        (mod,) = self.modalities
        if mod == "text":
            missing = [r for r in records if not isinstance(r.get("text"), str) or not r["text"].strip()]
            if missing:
                raise DataError(f"turn '{missing[0].get('id')}' has no 'text': the text model needs it")
            items: list[Any] = [r["text"] for r in records]
        else:
            from emotk.core.audio import SAMPLE_RATE
            from emotk.data.audio import load_audio

            missing = [r for r in records if not r.get("path")]
            if missing:
                raise DataError(f"turn '{missing[0].get('id')}' has no 'path': the speech model needs audio")
            items = [load_audio(r["path"], sr=SAMPLE_RATE, start=r.get("start"), end=r.get("end")) for r in records]
        return self.model.run(items)

    def row(self, record: dict[str, Any], dialogue: str, logits: torch.Tensor) -> dict[str, Any]:
        """The output object of one turn (see the module docstring)."""
        probs = torch.softmax(logits, dim=-1).tolist()
        out: dict[str, Any] = {"id": record.get("id"), "dialogue": dialogue}
        truth = self.truth(record)
        if truth is not None:
            out["label"] = truth
        out["prediction"] = self.classes[max(range(len(probs)), key=probs.__getitem__)]
        out["probabilities"] = {c: round(p, 6) for c, p in zip(self.classes, probs)}
        out["model"] = self.meta.get("config_hash")
        return out

    def truth(self, record: dict[str, Any]) -> str | None:
        """The record's label as a model class (through the training label map), or None."""
        raw = record.get(self.label_field)
        if raw is None:
            return None
        if self.label_map is not None and self.label_map.knows(raw):
            mapped = self.label_map.convert(raw)
            return mapped if mapped in self.classes else None
        return str(raw) if str(raw) in self.classes else None


def _dialogues(records: Iterable[tuple[dict[str, Any], str]]) -> dict[str, list[tuple[dict[str, Any], str]]]:
    groups: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for rec, where in records:
        if rec.get("dialogue") is None:
            raise DataError(f"{where}: turn '{rec.get('id')}' has no 'dialogue'")
        groups.setdefault(str(rec["dialogue"]), []).append((rec, where))
    return groups


def predict(model_dir: "str | os.PathLike | ErcPredictor", manifest: Any, *, device: str = "cpu",
            batch_dialogues: int = 1) -> Iterator[dict[str, Any]]:
    """Predict every turn of a conversation manifest (path or :class:`~emotk.data.manifest.Manifest`), dialogue
    by dialogue in manifest order of first appearance, turns in ``turn`` order (checked as training checks them)."""
    from emotk.data.conversations import group_conversations
    from emotk.data.manifest import Manifest

    predictor = model_dir if isinstance(model_dir, ErcPredictor) else ErcPredictor(model_dir, device=device)
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    need_text = any(predictor.embed[x].kind == "text" and not predictor.embed[x].from_run for x in predictor.modalities)
    convs = group_conversations(m, label_field="\x00", classes=predictor.classes, need_text=need_text)
    by_id = {r.get("id"): r for r in m.records}
    for conv in convs:
        records = [by_id[u] for u in conv.ids]
        logits, _ = predictor.dialogue_outputs(records, list(conv.speakers))
        for rec, row in zip(records, logits):
            yield predictor.row(rec, conv.name, row)


class OnlineSession:
    """Online ERC over a stream of turns (any interleaving of dialogues): :meth:`add` embeds one turn, appends
    it to its dialogue and returns the turn's prediction, computed from that dialogue's turns so far."""

    def __init__(self, predictor: ErcPredictor) -> None:
        if not predictor.causal:
            raise UsageError(f"{predictor.folder}: this model was trained with model.context=full (every turn sees "
                             "the whole dialogue); online prediction needs a causal model: train one with "
                             "--set model.context=causal")
        self.predictor = predictor
        self.state: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any], where: str = "stdin") -> dict[str, Any]:
        dialogue = record.get("dialogue")
        if dialogue is None:
            raise DataError(f"{where}: turn '{record.get('id')}' has no 'dialogue'")
        if record.get("speaker") is None:
            raise DataError(f"{where}: turn '{record.get('id')}' has no 'speaker' (the speaker masks need it)")
        st = self.state.setdefault(str(dialogue), {"speakers": {}, "turns": [], "ids": set(), "net": None})
        uid = record.get("id") if record.get("id") is not None else f"{dialogue}/{len(st['turns'])}"
        if uid in st["ids"]:
            raise DataError(f"{where}: duplicate turn '{uid}' in dialogue '{dialogue}'")
        turn = record.get("turn")
        if turn is not None and st["turns"] and turn <= st["turns"][-1]:
            raise DataError(f"{where}: turn {turn} of dialogue '{dialogue}' arrives after turn {st['turns'][-1]}; "
                            "online turns must come in order")
        record = {**record, "id": uid}
        speakers = st["speakers"]
        speaker = speakers.setdefault(str(record["speaker"]), len(speakers))
        logits, _, st["net"] = self.predictor.step_turn(record, speaker, st["net"])
        st["ids"].add(uid)
        st["turns"].append(turn if turn is not None else len(st["turns"]))
        return self.predictor.row(record, str(dialogue), logits)
