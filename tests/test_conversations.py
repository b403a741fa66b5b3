"""Conversation data for ERC: grouping and its bad-input errors, collate invariants, batching, manifest-split,
the conversation protocols, and the data on ../shared (IEMOCAP-6 transcripts, MELD CSVs)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from emotk.data import protocols as P
from emotk.data.conversations import (
    IGNORE_INDEX,
    PAD_SPEAKER,
    ConversationBatchSampler,
    ConversationCollator,
    ConversationDataset,
    collate_conversations,
    conversation_batches,
    conversation_splits,
    group_conversations,
)
from emotk.data.labels import LabelMap
from emotk.data.manifest import Manifest
from emotk.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
IEMOCAP_TEXT = SHARED / "iemocap-text" / "manifest.jsonl"
MELD_CSV = SHARED / "meld"


def _turn(dialogue, turn, speaker="A", emotion="ang", text=None, **extra):
    rec = {"id": f"t-{dialogue}-{turn}", "dataset": "t", "dialogue": dialogue, "turn": turn, "speaker": speaker,
           "text": text if text is not None else f"{dialogue} says {turn}"}
    if emotion is not None:
        rec["emotion"] = emotion
    rec.update(extra)
    return rec


def _write(tmp_path, records, name="m.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


LM = LabelMap("toy", ["angry", "sad"], {"ang": "angry", "sad": "sad", "fru": None}, "t", "emotion")


# ---- grouping ------------------------------------------------------------------------------------------------
def test_grouping_orders_turns_numbers_speakers_and_labels(tmp_path):
    recs = [_turn("d2", 5, "B", "sad"), _turn("d1", 1, "X", "fru"), _turn("d2", 0, "A"), _turn("d1", 0, "Y"),
            _turn("d2", 3, "A", None), _turn("d1", 7, "Y", "sad")]
    m = Manifest.load(_write(tmp_path, recs))
    cs = group_conversations(m, label_map=LM, need_text=True)
    assert cs.classes == ["angry", "sad"]
    assert [c.name for c in cs] == ["d2", "d1"]  # order of first appearance
    d2, d1 = cs
    assert d2.turns == [0, 3, 5] and d2.ids == ["t-d2-0", "t-d2-3", "t-d2-5"]
    assert d2.speakers == [0, 0, 1] and d2.speaker_names == ["A", "B"]
    assert d2.labels == [0, IGNORE_INDEX, 1]  # no label -> unlabelled turn
    assert d1.turns == [0, 1, 7] and d1.speakers == [0, 1, 0] and d1.speaker_names == ["Y", "X"]
    assert d1.labels == [0, IGNORE_INDEX, 1]  # 'fru' mapped to null: unlabelled context, not dropped
    assert d1.lines == [4, 2, 6] and d1.texts == ["d1 says 0", "d1 says 1", "d1 says 7"]
    assert cs.summary()["classes"] == {"angry": 2, "sad": 2} and cs.summary()["utterances"] == 6
    # without a label map: the sorted labels present are the classes
    assert group_conversations(m).classes == ["ang", "fru", "sad"]
    # a subset of ids
    assert group_conversations(m, label_map=LM, ids=["t-d1-7", "t-d1-0"]).conversations[0].ids == ["t-d1-0", "t-d1-7"]


@pytest.mark.parametrize("bad, kwargs, pattern", [
    ({"dialogue": None}, {}, r"m\.jsonl:2: record 't-d1-1' has no 'dialogue'"),
    ({"turn": None}, {}, r"m\.jsonl:2: record 't-d1-1' has no 'turn'"),
    ({"position": "two"}, {"turn_field": "position"}, r"m\.jsonl:2: record 't-d1-1': 'position' must be an integer, "
                                                       r"got 'two'"),
    ({"turn": 0}, {}, r"m\.jsonl:2: record 't-d1-1': duplicate turn 0 of dialogue 'd1' \(first on line 1\)"),
    ({"speaker": None}, {}, r"m\.jsonl:2: record 't-d1-1' has no 'speaker'"),
    ({"text": "  "}, {"need_text": True}, r"m\.jsonl:2: record 't-d1-1' has an empty 'text'"),
])
def test_bad_turns_are_one_line_errors_naming_file_and_line(tmp_path, bad, kwargs, pattern):
    first = _turn("d1", 0, position=1)
    second = _turn("d1", 1, position=2)
    for key, value in bad.items():
        if value is None:
            del second[key]
        else:
            second[key] = value
    if "text" in bad:
        second["path"] = "x.wav"  # a record with audio may have an empty text; text mode still refuses it
    m = Manifest.load(_write(tmp_path, [first, second, _turn("d2", 0, position=1)]))
    with pytest.raises(DataError, match=pattern) as e:
        group_conversations(m, **kwargs)
    assert "\n" not in str(e.value)


def test_missing_text_in_text_mode(tmp_path):
    recs = [_turn("d1", 0), {**_turn("d1", 1), "path": "a.wav"}]
    del recs[1]["text"]
    m = Manifest.load(_write(tmp_path, recs))
    assert group_conversations(m).conversations[0].texts == ["d1 says 0", ""]  # not needed: fine
    with pytest.raises(DataError, match=r"m\.jsonl:2: record 't-d1-1' has no 'text': the text modality"):
        group_conversations(m, need_text=True)
    # a speaker may be optional: then each such turn is a speaker of its own
    recs = [_turn("d1", 0), _turn("d1", 1), _turn("d1", 2)]
    del recs[1]["speaker"], recs[2]["speaker"]
    conv = group_conversations(Manifest.from_records(recs), require_speaker=False)[0]
    assert conv.speakers == [0, 1, 2]


def test_unknown_labels_are_listed_once_with_counts(tmp_path):
    recs = [_turn("d1", 0, emotion="ang"), _turn("d1", 1, emotion="joy"), _turn("d1", 2, emotion="joy"),
            _turn("d2", 0, emotion="xxx"), _turn("d2", 1, emotion="sad")]
    m = Manifest.load(_write(tmp_path, recs))
    with pytest.raises(DataError) as e:
        group_conversations(m, label_map=LM)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'm.jsonl'}: 2 unknown emotion labels")
    assert "'joy' (2, first on line 2), 'xxx' (1, first on line 4)" in msg and msg.count("'joy'") == 1
    with pytest.raises(DataError, match="1 unknown emotion label.*'ang'"):
        group_conversations(m, classes=["joy", "sad", "xxx"])


# ---- collate ---------------------------------------------------------------------------------------------------
def _convs(lengths, seed=0):
    rng = random.Random(seed)
    recs = []
    for d, n in enumerate(lengths):
        speakers = [rng.choice("PQR") for _ in range(n)]
        for t in range(n):
            recs.append(_turn(f"d{d}", t, speakers[t], rng.choice(["ang", "sad", "fru", None])))
    return group_conversations(Manifest.from_records(recs), label_map=LM)


def test_collate_pads_sorts_and_restores_order():
    cs = _convs([3, 1, 120, 5, 1])
    lookup = {uid: torch.randn(4) for uid in cs.ids}
    batch = collate_conversations(list(cs), {"text": lookup, "speech": {k: v.numpy() * 2 for k, v in lookup.items()}})
    b, t = 5, 120
    assert batch["lengths"].tolist() == [120, 5, 3, 1, 1]
    assert batch["order"].tolist() == [2, 3, 0, 1, 4]  # stable: equal lengths keep the input order
    assert torch.equal(batch["order"][batch["restore"]], torch.arange(b))
    assert torch.equal(batch["lengths"][batch["restore"]], torch.tensor([3, 1, 120, 5, 1]))
    assert batch["mask"].shape == (b, t) and batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == batch["lengths"].tolist()
    for row, src in enumerate(batch["order"].tolist()):
        conv, n = cs[src], len(cs[src])
        assert batch["dialogues"][row] == conv.name and batch["ids"][row] == conv.ids
        assert bool(batch["mask"][row, :n].all()) and not bool(batch["mask"][row, n:].any())
        assert batch["speaker"][row, :n].tolist() == conv.speakers
        assert batch["speaker"][row, :n].max() < conv.num_speakers and (batch["speaker"][row, n:] == PAD_SPEAKER).all()
        assert batch["labels"][row, :n].tolist() == conv.labels and (batch["labels"][row, n:] == IGNORE_INDEX).all()
        for k, uid in enumerate(conv.ids):
            assert torch.equal(batch["features"]["text"][row, k], lookup[uid])
            assert torch.allclose(batch["features"]["speech"][row, k], lookup[uid] * 2)
        assert (batch["features"]["text"][row, n:] == 0).all()
    assert batch["features"]["text"].shape == (b, t, 4) and batch["features"]["text"].dtype == torch.float32
    # speaker indices are numbered by first appearance within each dialogue
    for conv in cs:
        firsts = [conv.speakers.index(s) for s in range(conv.num_speakers)]
        assert firsts == sorted(firsts) and conv.speakers[0] == 0
    # per-row outputs go back to input order with restore
    per_row = batch["lengths"].float() * 10
    assert per_row[batch["restore"]].tolist() == [30.0, 10.0, 1200.0, 50.0, 10.0]


def test_collate_errors_name_the_missing_utterance():
    cs = _convs([2, 3])
    lookup = {uid: [0.0, 1.0] for uid in cs.ids}
    del lookup["t-d1-2"]
    with pytest.raises(DataError, match="features 'text': no vector for utterance 't-d1-2' \\(dialogue 'd1'\\)"):
        collate_conversations(list(cs), {"text": lookup})
    lookup["t-d1-2"] = [0.0, 1.0, 2.0]
    with pytest.raises(DataError, match="'t-d1-2' has 3 dimensions, others have 2"):
        collate_conversations(list(cs), {"text": lookup})


def test_dataloader_with_sampler_and_collator():
    lengths = [1] * 20 + [120, 60, 7, 7, 30]
    cs = _convs(lengths, seed=1)
    lookup = {uid: torch.full((3,), float(i)) for i, uid in enumerate(cs.ids)}
    sampler = ConversationBatchSampler(cs.lengths, batch_size=8, max_turns=100, seed=3, bucket=True)
    loader = torch.utils.data.DataLoader(ConversationDataset(cs), batch_sampler=sampler,
                                         collate_fn=ConversationCollator({"text": lookup}))
    seen = []
    for batch in loader:
        b, t = batch["mask"].shape
        assert b <= 8 and (b * t <= 100 or b == 1)
        seen += batch["dialogues"]
    assert sorted(seen) == sorted(c.name for c in cs)


def test_conversation_batches_are_deterministic_and_complete():
    lengths = [1] * 30 + [120, 101, 3, 50, 50, 2, 9]
    for bucket in (False, True):
        a = conversation_batches(lengths, batch_size=4, max_turns=100, seed=7, epoch=2, bucket=bucket)
        assert a == conversation_batches(lengths, batch_size=4, max_turns=100, seed=7, epoch=2, bucket=bucket)
        assert a != conversation_batches(lengths, batch_size=4, max_turns=100, seed=7, epoch=3, bucket=bucket)
        assert sorted(i for b in a for i in b) == list(range(len(lengths)))
        for b in a:
            assert len(b) <= 4
            assert max(lengths[i] for i in b) * len(b) <= 100 or len(b) == 1
        assert [30] in a and [31] in a  # the dialogues longer than max_turns get a batch of their own
    plain = conversation_batches(lengths, batch_size=10, shuffle=False)
    assert plain[0] == list(range(10)) and len(plain) == 4
    # bucketing wastes less padding than a plain shuffle
    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert padding(conversation_batches(lengths, 4, seed=0, bucket=True)) < padding(conversation_batches(lengths, 4))
    sampler = ConversationBatchSampler(lengths, batch_size=4, seed=7)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and len(sampler) == len(list(sampler))
    with pytest.raises(Exception, match="batch_size must be a positive integer"):
        conversation_batches(lengths, 0)


# ---- protocols -------------------------------------------------------------------------------------------------
def test_manifest_split_protocol(tmp_path, cli):
    recs = [_turn("d1", 0, split="train"), _turn("d1", 1, split="train"), _turn("d2", 0, split="Dev"),
            _turn("d3", 0, split="test"), _turn("d4", 0, split="other"), _turn("d5", 0)]
    path = _write(tmp_path, recs)
    m = Manifest.load(path)
    proto = P.find_protocol("manifest-split")
    assert proto.name == P.MANIFEST_SPLIT and proto.fold_names == ["split"] and proto.unit == "split"
    assert proto.sha256 == P.find_protocol("manifest-split").sha256
    assert proto.assign(m) == {"train": ["t-d1-0", "t-d1-1"], "valid": ["t-d2-0"], "test": ["t-d3-0"]}
    assert P.is_manifest_split("") and P.is_manifest_split(None) and not P.is_manifest_split("meld-official")
    splits = conversation_splits(m, "manifest-split")
    assert {k: [c.name for c in v] for k, v in splits.items()} == {"train": ["d1"], "valid": ["d2"], "test": ["d3"]}
    assert conversation_splits(m)["train"].ids == splits["train"].ids  # None = manifest-split
    with pytest.raises(DataError, match=r"known: .*built in: manifest-split"):
        P.find_protocol("manifest-splt")
    res = cli("--json", "data", "split", str(path), "--protocol", "manifest-split", "--write-manifests",
              "-o", str(tmp_path / "out"))
    assert res.code == 0, res.err
    valid = [json.loads(x) for x in (tmp_path / "out" / "split" / "valid.jsonl").read_text().splitlines()]
    assert [(r["id"], r["split"]) for r in valid] == [("t-d2-0", "valid")]


def test_a_protocol_that_cuts_a_dialogue_is_refused(tmp_path):
    recs = [_turn("d1", 0, split="train"), _turn("d1", 1, split="test"), _turn("d2", 0, split="train")]
    m = Manifest.load(_write(tmp_path, recs))
    with pytest.raises(DataError, match=r"m\.jsonl:2: dialogue 'd1' is cut by protocol 'manifest-split'.*line 1 is "
                                        r"train, this turn is test"):
        conversation_splits(m)
    recs[1]["split"] = "other"  # outside the fold
    with pytest.raises(DataError, match="this turn is outside the fold"):
        conversation_splits(Manifest.from_records(recs))


def test_conversation_splits_share_the_training_classes(tmp_path):
    recs = [_turn("d1", 0, emotion="ang", split="train"), _turn("d1", 1, emotion="sad", split="train"),
            _turn("d2", 0, emotion="joy", split="test")]
    m = Manifest.load(_write(tmp_path, recs))
    with pytest.raises(DataError, match="unknown emotion label.*'joy'"):
        conversation_splits(m)
    out = conversation_splits(m, label_map=LabelMap("x", ["ang", "joy", "sad"]))
    assert out["test"][0].labels == [1] and out["train"].classes == ["ang", "joy", "sad"]


def test_iemocap_erc_protocols_match_prefixed_and_plain_dialogue_names():
    six, four = P.find_protocol("iemocap-6-erc"), P.find_protocol("iemocap-4-erc")
    for proto in (six, four):
        assert P.Protocol.load(proto.path).sha256 == proto.sha256  # stored sha256 checked on load
        assert proto.strip_dataset_prefix and proto.unit == "dialogue" and proto.dataset == ""
        fold = proto.fold()
        assert (len(fold.train), len(fold.valid), len(fold.test)) == (108, 12, 31)
        assert all(d.startswith("Ses05") for d in fold.test)
        assert not any(d.startswith("Ses05") for d in fold.train + fold.valid)
    assert "Ses03M_impro08a" in six.fold().valid and six.fold().valid != four.fold().valid
    # seeded: the first 12 of Sessions 1-4 ranked by sha256('0:' + name)
    s14 = sorted(six.fold().train + six.fold().valid)
    assert four.fold().valid == sorted(sorted(s14, key=lambda d: P._rank_key(0, d))[:12])
    recs = [{"id": "iemocap-Ses05F_impro01_F000", "dataset": "iemocap", "dialogue": "iemocap-Ses05F_impro01",
             "path": "a.wav"},
            {"id": "iemocap-Ses01F_impro01_F000", "dataset": "iemocap", "dialogue": "iemocap-Ses01F_impro01",
             "path": "b.wav"},
            {"id": "x/Ses03M_impro08a/000", "dataset": "iemocap-text", "dialogue": "Ses03M_impro08a", "text": "hi"}]
    assert six.assign(Manifest.from_records(recs)) == {
        "train": ["iemocap-Ses01F_impro01_F000"], "valid": ["x/Ses03M_impro08a/000"],
        "test": ["iemocap-Ses05F_impro01_F000"]}


def test_make_protocols_rebuilds_the_committed_erc_files():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_protocols", REPO / "data_manifests" / "make_protocols.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.check_protocols(REPO / "data_manifests") == []
    names = {p.name for p in mod.build_protocols()}
    assert {"iemocap-6-erc", "iemocap-4-erc", "meld-official", "cmu-mosi-standard"} <= names


# ---- real data -------------------------------------------------------------------------------------------------
@pytest.mark.shared_data
@pytest.mark.skipif(not IEMOCAP_TEXT.is_file(), reason="../shared/data/iemocap-text not present")
def test_iemocap_text_protocols_give_the_benchmark_counts():
    from emotk.data.labels import find_label_map

    m = Manifest.load(IEMOCAP_TEXT)
    own = conversation_splits(m, "manifest-split", label_map=find_label_map("iemocap-6"), need_text=True)
    six = conversation_splits(m, "iemocap-6-erc", label_map=find_label_map("iemocap-6"), need_text=True)
    for splits in (own, six):
        assert {k: len(v) for k, v in splits.items()} == {"train": 108, "valid": 12, "test": 31}
        assert {k: sum(v.lengths) for k, v in splits.items()} == {"train": 5163, "valid": 647, "test": 1623}
        assert splits["test"].summary()["classes"] == {"angry": 170, "excited": 299, "frustrated": 381,
                                                       "happy": 144, "neutral": 384, "sad": 245}
    assert {k: v.ids for k, v in own.items()} == {k: v.ids for k, v in six.items()}
    four = conversation_splits(m, "iemocap-4-erc", label_map=find_label_map("iemocap-4"), need_text=True)
    assert {k: len(v) for k, v in four.items()} == {"train": 108, "valid": 12, "test": 31}
    assert four["test"].classes == ["angry", "happy", "neutral", "sad"]
    test = four["test"].summary()
    assert test["utterances"] == 1623 and test["labelled"] == 1623 - 381  # frustrated: unlabelled context
    assert max(six["valid"].lengths) >= 100
    batch = collate_conversations(list(six["valid"]))
    assert batch["lengths"][0] == max(six["valid"].lengths) and int(batch["mask"].sum()) == 647


@pytest.fixture(scope="module")
def meld_text_manifest(tmp_path_factory):
    if not (MELD_CSV / "train_sent_emo.csv").is_file():
        pytest.skip("../shared/data/meld not present")
    from emotk.data.prepare import get_importer
    from emotk.data.prepare.base import PrepareOptions, write_result

    out = tmp_path_factory.mktemp("meld")
    opts = PrepareOptions(out_dir=out, extra={"text_only": "true"})
    write_result(get_importer("meld").prepare(MELD_CSV, opts), opts)
    return out / "manifest.jsonl"


@pytest.mark.shared_data
def test_meld_text_only_manifest_and_official_protocol(meld_text_manifest, cli):
    from emotk.data.labels import find_label_map

    m = Manifest.load(meld_text_manifest)
    assert len(m) == 13708 and len(m.text_only()) == 13708
    res = cli("data", "validate", str(meld_text_manifest))
    assert res.code == 0 and "13708 utterances (all text-only: no audio)" in res.out
    splits = conversation_splits(m, "meld-official", label_map=find_label_map("meld"), need_text=True)
    assert {k: len(v) for k, v in splits.items()} == {"train": 1038, "valid": 114, "test": 280}
    assert {k: sum(v.lengths) for k, v in splits.items()} == {"train": 9989, "valid": 1109, "test": 2610}
    assert splits["test"].summary()["classes"]["neutral"] == 1256
    assert splits["train"].summary()["one_turn_dialogues"] > 0
    first = splits["valid"][0]
    assert first.name == "meld-dev-dia0" and first.texts[0].startswith("Oh my God, he\u2019s lost it.")
    assert {k: v.ids for k, v in conversation_splits(m, label_map=find_label_map("meld")).items()} == \
        {k: v.ids for k, v in splits.items()}
