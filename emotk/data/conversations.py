"""Conversations for emotion recognition in conversation (ERC): manifest records grouped into dialogues.

A *turn* is a manifest record with ``dialogue`` (the conversation's name) and ``turn`` (an integer; turns are
ordered by it, gaps allowed), usually ``speaker``, ``text`` and a label. :func:`group_conversations` checks them
and builds :class:`Conversation` objects (one-line DataErrors naming file:line for a turn without ``dialogue`` or
``turn``, a non-integer turn, a duplicate (dialogue, turn), a missing speaker or text, and one error listing
every unknown label once with its count). :func:`conversation_splits` applies a protocol (``manifest-split`` =
the records' own ``split``) and refuses one that cuts a dialogue across splits.

Batches are whole conversations: :class:`ConversationDataset` serves :class:`Conversation` items,
:func:`collate_conversations` (or a :class:`ConversationCollator` bound to feature lookups) pads them into
``(B, T)`` tensors sorted by length, and :func:`conversation_batches` / :class:`ConversationBatchSampler` cut an
epoch into batches of at most ``batch_size`` conversations and, optionally, ``max_turns`` padded turns
(IEMOCAP dialogues have 100+ turns, MELD many 1-turn ones), deterministically from ``(seed, epoch)``.

Attention masks (same speaker, listener, window, causal) are built from the batch's ``mask`` and ``speaker`` by
:mod:`emotk.nn` (not here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from emotk.data.labels import LabelMap, unknown_labels_message
from emotk.data.manifest import Manifest
from emotk.errors import DataError, UsageError

IGNORE_INDEX = -100  # label of padding and unlabelled turns (torch cross-entropy's ignore_index)
PAD_SPEAKER = -1  # speaker index on padding
LABEL_HINT = "map them in the label map (null keeps the turn as unlabelled context) or give another label map"


@dataclass
class Conversation:
    """One dialogue in turn order.

    ids: utterance ids; turns: the records' ``turn`` values (increasing); speakers: speaker index of each turn
    within this dialogue (0..S-1, numbered by first appearance); speaker_names: the S speaker names in index
    order; labels: class index per turn, :data:`IGNORE_INDEX` for unlabelled turns (no label, or a label the
    label map drops: they stay in the dialogue as context); texts: the turns' text (None when not read);
    lines: the records' manifest line numbers.
    """

    name: str
    ids: list[str]
    turns: list[int]
    speakers: list[int]
    speaker_names: list[str]
    labels: list[int]
    texts: list[str] | None = None
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_speakers(self) -> int:
        return len(self.speaker_names)

    @property
    def num_labelled(self) -> int:
        return sum(1 for y in self.labels if y != IGNORE_INDEX)


@dataclass
class ConversationSet:
    """Conversations of one manifest (or one split of it) and the class list their labels index."""

    conversations: list[Conversation]
    classes: list[str]
    label_map: LabelMap | None = None
    source: str = "manifest"

    def __len__(self) -> int:
        return len(self.conversations)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(self.conversations)

    def __getitem__(self, i: int) -> Conversation:
        return self.conversations[i]

    @property
    def lengths(self) -> list[int]:
        """Turns per conversation."""
        return [len(c) for c in self.conversations]

    @property
    def ids(self) -> list[str]:
        """Every utterance id, dialogue by dialogue in turn order."""
        return [i for c in self.conversations for i in c.ids]

    def summary(self) -> dict[str, Any]:
        """Counts: dialogues, utterances, labelled utterances, per-class counts, longest / shortest dialogue."""
        counts = {c: 0 for c in self.classes}
        for conv in self.conversations:
            for y in conv.labels:
                if y != IGNORE_INDEX:
                    counts[self.classes[y]] += 1
        lengths = self.lengths
        return {"dialogues": len(self), "utterances": sum(lengths), "labelled": sum(counts.values()),
                "classes": counts, "max_turns": max(lengths, default=0), "min_turns": min(lengths, default=0),
                "one_turn_dialogues": sum(1 for n in lengths if n == 1)}


# ---- grouping ------------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def group_conversations(
    manifest: Manifest | str,
    *,
    label_map: LabelMap | None = None,
    classes: Sequence[str] | None = None,
    label_field: str | None = None,
    need_text: bool = False,
    text_field: str = "text",
    dialogue_field: str = "dialogue",
    turn_field: str = "turn",
    speaker_field: str = "speaker",
    require_speaker: bool = True,
    ids: Iterable[str] | None = None,
    label_hint: str = LABEL_HINT,
) -> ConversationSet:
    """Group ``manifest``'s records (or only those in ``ids``) into conversations.

    Labels (``label_field``, default the label map's field, else ``emotion``): with ``label_map`` a raw label
    becomes its class or, when the map drops it (null), an unlabelled turn; without one, ``classes`` is the
    class list (default: the sorted labels present). A record without a label is an unlabelled turn. Labels the
    map does not know are one DataError listing each with its count and first line.

    need_text: every turn must have a non-empty ``text_field`` (text models); the texts are returned either way
    when present. require_speaker: a turn without ``speaker_field`` is an error (the speaker and listener masks
    need it); when False such a turn is a speaker of its own.

    Conversations come in order of first appearance in the manifest, turns ordered by ``turn``.
    """
    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    where = str(m.path) if m.path is not None else "manifest"
    wanted = None if ids is None else set(ids)
    if label_map is None:
        field_name = label_field or "emotion"
    else:
        field_name = label_field or label_map.field
    if label_map is None and classes is not None:
        label_map = LabelMap("classes", list(classes), {}, "", field_name)
    rows: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}  # dialogue -> [(turn, line, record)]
    first_turn_line: dict[tuple[str, int], int] = {}
    for index, rec in enumerate(m.records):
        if wanted is not None and rec.get("id") not in wanted:
            continue
        line = m.lineno(index)
        at = f"{where}:{line}: record '{rec.get('id')}'"
        dialogue = rec.get(dialogue_field)
        if dialogue is None or (isinstance(dialogue, str) and not dialogue.strip()):
            raise DataError(f"{at} has no '{dialogue_field}': every turn of a conversation needs its dialogue name")
        turn = rec.get(turn_field)
        if turn is None:
            raise DataError(f"{at} has no '{turn_field}': every turn needs its integer position in the dialogue")
        if not _is_int(turn):
            raise DataError(f"{at}: '{turn_field}' must be an integer, got {turn!r}")
        key = (str(dialogue), int(turn))
        if key in first_turn_line:
            raise DataError(f"{at}: duplicate turn {turn} of dialogue '{dialogue}' (first on line "
                            f"{first_turn_line[key]})")
        first_turn_line[key] = line
        if require_speaker and rec.get(speaker_field) in (None, ""):
            raise DataError(f"{at} has no '{speaker_field}': the speaker and listener masks need each turn's "
                            "speaker")
        if need_text:
            text = rec.get(text_field)
            if not isinstance(text, str) or not text.strip():
                what = "no" if text is None else "an empty" if isinstance(text, str) else "a non-string"
                raise DataError(f"{at} has {what} '{text_field}': the text modality needs every turn's text")
        rows.setdefault(str(dialogue), []).append((int(turn), line, rec))

    if label_map is None:
        present = {str(r.get(field_name)) for turns in rows.values() for _, _, r in turns
                   if r.get(field_name) is not None}
        label_map = LabelMap("labels", sorted(present), {}, "", field_name)
    unknown: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for turns in rows.values():
        for _, line, rec in turns:
            raw = rec.get(field_name)
            if raw is not None and not label_map.knows(raw):
                unknown[str(raw)] = unknown.get(str(raw), 0) + 1
                first_line.setdefault(str(raw), line)
    if unknown:
        raise DataError(unknown_labels_message(unknown, first_line, where, field_name, label_map, label_hint))

    index_of = {c: i for i, c in enumerate(label_map.classes)}
    conversations = []
    for name, turns in rows.items():
        turns.sort(key=lambda t: t[0])
        speaker_names: list[str] = []
        speaker_index: dict[str, int] = {}
        speakers, labels, texts = [], [], []
        for turn, line, rec in turns:
            spk = rec.get(speaker_field)
            spk_key = str(spk) if spk not in (None, "") else f"\0{line}"  # no speaker: a speaker of its own
            if spk_key not in speaker_index:
                speaker_index[spk_key] = len(speaker_names)
                speaker_names.append(str(spk) if spk not in (None, "") else f"<unknown line {line}>")
            speakers.append(speaker_index[spk_key])
            cls = label_map.convert(rec.get(field_name))
            labels.append(index_of[cls] if cls is not None else IGNORE_INDEX)
            text = rec.get(text_field)
            texts.append(text if isinstance(text, str) else "")
        conversations.append(Conversation(
            name=name, ids=[str(r["id"]) for _, _, r in turns], turns=[t for t, _, _ in turns], speakers=speakers,
            speaker_names=speaker_names, labels=labels, texts=texts, lines=[n for _, n, _ in turns]))
    return ConversationSet(conversations, list(label_map.classes), label_map, where)


def conversation_splits(
    manifest: Manifest | str,
    protocol: Any = None,
    fold: str | int | None = None,
    **group_kwargs: Any,
) -> dict[str, ConversationSet]:
    """``{"train", "valid", "test"}`` -> the conversations of each split of ``protocol``'s ``fold``.

    protocol: a :class:`~emotk.data.protocols.Protocol`, a committed name or file, or None / ``""`` /
    ``manifest-split`` (the records' own ``split`` field). Every split uses one class list: the label map's,
    else ``classes``, else the sorted labels of the training split. A dialogue whose turns fall in more than one
    split (or partly outside the fold) is a DataError: ERC needs whole dialogues. Extra keyword arguments go to
    :func:`group_conversations`.
    """
    from emotk.data.protocols import Protocol, find_protocol, is_manifest_split, manifest_split_protocol

    m = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    where = str(m.path) if m.path is not None else "manifest"
    if isinstance(protocol, Protocol):
        proto = protocol
    elif is_manifest_split(protocol):
        proto = manifest_split_protocol()
    else:
        proto = find_protocol(protocol)
    info = proto.assign_detailed(m, fold)
    split_of = {rid: s for s, split_ids in info["splits"].items() for rid in split_ids}
    if not split_of:
        raise DataError(f"{where}: protocol '{proto.name}' (fold '{info['fold']}') selects no record of this "
                        f"manifest (unit '{proto.unit}'{', dataset ' + repr(proto.dataset) if proto.dataset else ''})")
    dialogue_field = group_kwargs.get("dialogue_field", "dialogue")
    seen: dict[str, tuple[str, int]] = {}  # dialogue -> (split, line)
    for index, rec in enumerate(m.records):
        dialogue = rec.get(dialogue_field)
        if dialogue is None:
            continue
        if proto.dataset and rec.get("dataset") != proto.dataset:
            continue
        split = split_of.get(rec.get("id"), "outside the fold")
        line = m.lineno(index)
        first = seen.setdefault(str(dialogue), (split, line))
        if first[0] != split:
            raise DataError(f"{where}:{line}: dialogue '{dialogue}' is cut by protocol '{proto.name}' (fold "
                            f"'{info['fold']}'): line {first[1]} is {first[0]}, this turn is {split}; ERC needs "
                            "whole dialogues (use a protocol by dialogue, session, video or the manifest's split)")
    kwargs = dict(group_kwargs)
    if kwargs.get("label_map") is None and kwargs.get("classes") is None:
        probe = group_conversations(m, ids=info["splits"]["train"], **kwargs)
        kwargs["classes"] = probe.classes
    out = {}
    for split, split_ids in info["splits"].items():
        out[split] = group_conversations(m, ids=split_ids, **kwargs)
        out[split].source = f"{where} ({proto.name}:{info['fold']}:{split})"
    return out


# ---- dataset, collate ----------------------------------------------------------------------------------------
class ConversationDataset(torch.utils.data.Dataset):
    """Whole dialogues as dataset items: ``dataset[i]`` is a :class:`Conversation`."""

    def __init__(self, conversations: ConversationSet | Sequence[Conversation]):
        self.conversations = list(conversations)
        self.classes = list(conversations.classes) if isinstance(conversations, ConversationSet) else None

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitem__(self, i: int) -> Conversation:
        return self.conversations[i]

    @property
    def lengths(self) -> list[int]:
        return [len(c) for c in self.conversations]


def _vector(lookup: Any, uid: str, name: str, conv: Conversation) -> torch.Tensor:
    if uid not in lookup:
        raise DataError(f"features '{name}': no vector for utterance '{uid}' (dialogue '{conv.name}'); embed "
                        "every utterance of the manifest first")
    value = lookup[uid]
    t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if t.ndim != 1:
        raise DataError(f"features '{name}': utterance '{uid}' has a vector of shape {tuple(t.shape)}; expected "
                        "one (D,) vector per utterance")
    return t


def collate_conversations(
    batch: Sequence[Conversation],
    features: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Pad a list of conversations into one batch, longest first.

    features: modality name -> lookup of utterance id -> (D,) vector (a dict, a feature cache, anything with
    ``__getitem__`` and ``__contains__``); a missing id is a DataError naming the first.

    Returns a dict (B conversations, T = the longest; row ``b`` is input item ``order[b]``):

    * ``lengths`` (B,) long, descending; ``mask`` (B, T) bool, True on real turns (they come first);
    * ``speaker`` (B, T) long, speaker index within the dialogue (0..S-1), :data:`PAD_SPEAKER` (-1) on padding;
    * ``labels`` (B, T) long, class index, :data:`IGNORE_INDEX` (-100) on padding and unlabelled turns;
    * ``order`` (B,) long: input index of each row; ``restore`` (B,) long: row of each input item, so
      ``x[restore]`` puts per-row outputs back in input order (``restore[order] == arange(B)``);
    * ``ids`` list of B lists of utterance ids; ``dialogues`` list of B names;
    * ``features`` {name: (B, T, D) tensor of ``dtype``, zeros on padding} (empty without ``features``).
    """
    if not batch:
        raise UsageError("collate_conversations: empty batch")
    lengths_in = [len(c) for c in batch]
    if min(lengths_in) < 1:
        empty = next(c for c in batch if len(c) == 0)
        raise DataError(f"dialogue '{empty.name}' has no turns")
    # stable sort: equal lengths keep their input order
    order = sorted(range(len(batch)), key=lambda i: -lengths_in[i])
    convs = [batch[i] for i in order]
    b, t = len(convs), lengths_in[order[0]]
    lengths = torch.tensor([len(c) for c in convs], dtype=torch.long)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    speaker = torch.full((b, t), PAD_SPEAKER, dtype=torch.long)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
    for row, conv in enumerate(convs):
        n = len(conv)
        speaker[row, :n] = torch.as_tensor(conv.speakers, dtype=torch.long)
        labels[row, :n] = torch.as_tensor(conv.labels, dtype=torch.long)
    order_t = torch.tensor(order, dtype=torch.long)
    restore = torch.empty_like(order_t)
    restore[order_t] = torch.arange(b)
    feats: dict[str, torch.Tensor] = {}
    for name, lookup in (features or {}).items():
        out: torch.Tensor | None = None
        for row, conv in enumerate(convs):
            for k, uid in enumerate(conv.ids):
                vec = _vector(lookup, uid, name, conv)
                if out is None:
                    out = torch.zeros(b, t, vec.shape[0], dtype=dtype)
                elif vec.shape[0] != out.shape[2]:
                    raise DataError(f"features '{name}': utterance '{uid}' has {vec.shape[0]} dimensions, others "
                                    f"have {out.shape[2]}")
                out[row, k] = vec.to(dtype)
        feats[name] = out  # type: ignore[assignment]
    return {"lengths": lengths, "mask": mask, "speaker": speaker, "labels": labels, "order": order_t,
            "restore": restore, "ids": [list(c.ids) for c in convs], "dialogues": [c.name for c in convs],
            "features": feats}


class ConversationCollator:
    """A picklable ``collate_fn`` bound to feature lookups: ``ConversationCollator({"text": cache})(batch)``."""

    def __init__(self, features: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32):
        self.features = dict(features or {})
        self.dtype = dtype

    def __call__(self, batch: Sequence[Conversation]) -> dict[str, Any]:
        return collate_conversations(batch, self.features, self.dtype)


# ---- batching ------------------------------------------------------------------------------------------------
def conversation_batches(
    lengths: Sequence[int],
    batch_size: int = 32,
    max_turns: int | None = None,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    bucket: bool = False,
) -> list[list[int]]:
    """An epoch's batches of conversation indices, a function of ``(seed, epoch)`` and the lengths only.

    Each batch holds at most ``batch_size`` conversations and, with ``max_turns``, at most ``max_turns`` padded
    turns (``batch size × its longest dialogue``); a dialogue longer than ``max_turns`` gets a batch of its own
    (never dropped). Order: the epoch's permutation (:func:`emotk.train.distributed.epoch_permutation`; index
    order when not ``shuffle``); ``bucket`` first sorts it by length (stable, so equal lengths keep the shuffled
    order) so batches hold similar lengths and little padding, then shuffles the batches' order. Every index
    appears exactly once.
    """
    from emotk.train.distributed import epoch_permutation

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1):
        raise UsageError(f"max_turns must be a positive integer, got {max_turns!r}")
    lengths = [int(n) for n in lengths]
    order = [int(i) for i in epoch_permutation(len(lengths), seed, epoch, shuffle)]
    if bucket:
        order.sort(key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current:
            padded = max(longest, lengths[i]) * (len(current) + 1)
            if len(current) >= batch_size or (max_turns is not None and padded > max_turns):
                batches.append(current)
                current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    if bucket and shuffle and len(batches) > 1:
        perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), 1]).permutation(len(batches))
        batches = [batches[k] for k in perm]
    return batches


class ConversationBatchSampler(torch.utils.data.Sampler):
    """A ``batch_sampler`` for ``DataLoader`` over conversations (:func:`conversation_batches`); call
    :meth:`set_epoch` each epoch for a new deterministic order."""

    def __init__(self, lengths: Sequence[int], batch_size: int = 32, max_turns: int | None = None, seed: int = 0,
                 shuffle: bool = True, bucket: bool = False):
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.max_turns, self.seed = batch_size, max_turns, seed
        self.shuffle, self.bucket = shuffle, bucket
        self.epoch = 0
        conversation_batches(self.lengths[:1], batch_size, max_turns)  # check the arguments now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        return conversation_batches(self.lengths, self.batch_size, self.max_turns, self.seed, self.epoch,
                                    self.shuffle, self.bucket)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
