"""Rebuild every committed protocol file under data_manifests/<dataset>/protocols/ (deterministic, byte-identical).

Usage (from the repository root)::

    python data_manifests/make_protocols.py            # rewrite the committed files
    python data_manifests/make_protocols.py --check    # exit 1 if a committed file differs from what this builds
    python data_manifests/make_protocols.py --out DIR  # write the tree under DIR instead

The file format and the fold rule are documented in emotk/data/protocols.py. Unit values follow the importer
conventions (dataset-prefixed speakers "ravdess-01", sessions "Ses01", official split names, video ids).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout without installing emotk
    sys.path.insert(0, str(HERE.parent))

from emotk.data.protocols import Fold, Protocol, _rank_key, split_units  # noqa: E402

METHODS = "METHODS.md section 0 (thesis Tables 2.1 / 3.1 / 5.1)"

# CMU Multimodal SDK standard folds of CMU-MOSI (video ids; 52 / 10 / 31 videos).
MOSI_TRAIN = """2iD-tVS8NPw 8d-gEyoeBzc Qr1Ca94K55A Ci-AH39fi3Y 8qrpnFRGt2A Bfr499ggo-0 QN9ZIUWUXsY 9T9Hf74oK10
7JsX8y1ysxY 1iG0909rllw Oz06ZWiO20M BioHAh1qJAQ 9c67fiY0wGQ Iu2PFX3z_1s Nzq88NnDkEk Clx4VXItLTE 9J25DZhivz8
Af8D0E4ZXaw TvyZBvOMOTc W8NXH0Djyww 8OtFthrtaJM 0h-zjBukYpk Vj1wYRQjB-o GWuJjcEuzt8 BI97DNYfe5I PZ-lDQFboO8
1DmNV9C1hbY OQvJTdtJ2H4 I5y0__X72p0 9qR7uwkblbs G6GlGvlkxAQ 6_0THN4chvY Njd1F0vZSm4 BvYR0L6f2Ig 03bSnISJMiM
Dg_0XKD0Mf4 5W7Z1C_fDaE VbQk4H8hgr0 G-xst2euQUc MLal-t_vJPM BXuRRbG0Ugk LSi-o-IrDMs Jkswaaud0hk 2WGyTLYerpo
6Egk_28TtTM Sqr0AcuoNnk POKffnXeBds 73jzhE8R1TQ OtBXNcAL_lE HEsqda8_d0Q VCslbP0mgZI IumbAb8q2dM""".split()
MOSI_VALID = """WKA5OygbEKI c5xsKMxpXnc atnd_PF-Lbs bvLlb-M3UXU bOL9jKpeJRs _dI--eQ6qVU ZAIRrfG22O0 X3j2zQgwYgE
aiEXnCPZubE ZUXBRvtny7o""".split()
MOSI_TEST = """tmZoasNr4rU zhpQhgha_KU lXPQBPVc5Cw iiK8YX8oH1E tStelxIAHjw nzpVDcQ0ywM etzxEpPuc6I cW1FSBF59ik
d6hH302o4v8 k5Y_838nuGo pLTX3ipuDJI jUzDDGyPkXU f_pcplsH_V0 yvsjCA6Y5Fc nbWiPyCm4g0 rnaNMUZpvvg wMbj6ajWbic
cM3Yna7AavY yDtzw_Y-7RU vyB00TXsimI dq3Nf_lMPnE phBUpBr1hSo d3_k5Xpfmik v0zCBqDeKcE tIrG4oNLFzE fvVhgmXxadc
ob23OKe5a9Q cXypl4FnoZo vvZ4IcEtiZc f9O3YtZ2VfI c7UH_rxdZv4""".split()

MSP_PODCAST_CLASSES = ["angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
IEMOCAP_SESSIONS = [f"Ses0{i}" for i in range(1, 6)]
IEMOCAP_HOLDOUT = {"kind": "holdout", "fraction": 0.1, "group_by": "dialogue", "seed": 0}
# The 151 IEMOCAP dialogues (session + gender of the actor wearing the markers + improvisation/script), as in
# the release's dialog/EmoEvaluation file names; the IEMOCAP importer prefixes them with "iemocap-".
IEMOCAP_DIALOGUES = """
Ses01F_impro01 Ses01F_impro02 Ses01F_impro03 Ses01F_impro04 Ses01F_impro05 Ses01F_impro06 Ses01F_impro07
Ses01F_script01_1 Ses01F_script01_2 Ses01F_script01_3 Ses01F_script02_1 Ses01F_script02_2 Ses01F_script03_1
Ses01F_script03_2 Ses01M_impro01 Ses01M_impro02 Ses01M_impro03 Ses01M_impro04 Ses01M_impro05 Ses01M_impro06
Ses01M_impro07 Ses01M_script01_1 Ses01M_script01_2 Ses01M_script01_3 Ses01M_script02_1 Ses01M_script02_2
Ses01M_script03_1 Ses01M_script03_2 Ses02F_impro01 Ses02F_impro02 Ses02F_impro03 Ses02F_impro04 Ses02F_impro05
Ses02F_impro06 Ses02F_impro07 Ses02F_impro08 Ses02F_script01_1 Ses02F_script01_2 Ses02F_script01_3 Ses02F_script02_1
Ses02F_script02_2 Ses02F_script03_1 Ses02F_script03_2 Ses02M_impro01 Ses02M_impro02 Ses02M_impro03 Ses02M_impro04
Ses02M_impro05 Ses02M_impro06 Ses02M_impro07 Ses02M_impro08 Ses02M_script01_1 Ses02M_script01_2 Ses02M_script01_3
Ses02M_script02_1 Ses02M_script02_2 Ses02M_script03_1 Ses02M_script03_2 Ses03F_impro01 Ses03F_impro02 Ses03F_impro03
Ses03F_impro04 Ses03F_impro05 Ses03F_impro06 Ses03F_impro07 Ses03F_impro08 Ses03F_script01_1 Ses03F_script01_2
Ses03F_script01_3 Ses03F_script02_1 Ses03F_script02_2 Ses03F_script03_1 Ses03F_script03_2 Ses03M_impro01
Ses03M_impro02 Ses03M_impro03 Ses03M_impro04 Ses03M_impro05a Ses03M_impro05b Ses03M_impro06 Ses03M_impro07
Ses03M_impro08a Ses03M_impro08b Ses03M_script01_1 Ses03M_script01_2 Ses03M_script01_3 Ses03M_script02_1
Ses03M_script02_2 Ses03M_script03_1 Ses03M_script03_2 Ses04F_impro01 Ses04F_impro02 Ses04F_impro03 Ses04F_impro04
Ses04F_impro05 Ses04F_impro06 Ses04F_impro07 Ses04F_impro08 Ses04F_script01_1 Ses04F_script01_2 Ses04F_script01_3
Ses04F_script02_1 Ses04F_script02_2 Ses04F_script03_1 Ses04F_script03_2 Ses04M_impro01 Ses04M_impro02 Ses04M_impro03
Ses04M_impro04 Ses04M_impro05 Ses04M_impro06 Ses04M_impro07 Ses04M_impro08 Ses04M_script01_1 Ses04M_script01_2
Ses04M_script01_3 Ses04M_script02_1 Ses04M_script02_2 Ses04M_script03_1 Ses04M_script03_2 Ses05F_impro01
Ses05F_impro02 Ses05F_impro03 Ses05F_impro04 Ses05F_impro05 Ses05F_impro06 Ses05F_impro07 Ses05F_impro08
Ses05F_script01_1 Ses05F_script01_2 Ses05F_script01_3 Ses05F_script02_1 Ses05F_script02_2 Ses05F_script03_1
Ses05F_script03_2 Ses05M_impro01 Ses05M_impro02 Ses05M_impro03 Ses05M_impro04 Ses05M_impro05 Ses05M_impro06
Ses05M_impro07 Ses05M_impro08 Ses05M_script01_1 Ses05M_script01_1b Ses05M_script01_2 Ses05M_script01_3
Ses05M_script02_1 Ses05M_script02_2 Ses05M_script03_1 Ses05M_script03_2""".split()
# The validation dialogues of the DialogueRNN / COSMIC IEMOCAP-6 benchmark split (declare-lab/conv-emotion, COSMIC
# iemocap.pkl): 647 utterances; train 5,163 / test 1,623 (Session 5).
IEMOCAP_ERC6_VALID = """
Ses01M_impro01 Ses01M_script03_1 Ses02F_impro02 Ses02F_impro07 Ses02M_script01_2 Ses03F_impro01 Ses03M_impro02
Ses03M_impro08a Ses03M_script02_2 Ses03M_script03_2 Ses04F_impro07 Ses04F_script02_1""".split()


def _official(dataset: str, name: str, fold: str, description: str, source: str, train: list[str],
              valid: list[str], test: list[str], **extra) -> Protocol:
    return Protocol(name=name, dataset=dataset, unit="split", description=description, source=source,
                    folds=[Fold(fold, sorted(train), sorted(valid), sorted(test))], **extra)


def build_protocols() -> list[Protocol]:
    """Every committed protocol, in a fixed order."""
    protos = []

    ravdess = [f"ravdess-{i:02d}" for i in range(1, 25)]
    protos.append(Protocol(
        name="ravdess-5fold", dataset="ravdess", unit="speaker", source="docs BASELINES.md (RAVDESS speech baselines)",
        description=(
            "RAVDESS speech, 5 actor-independent folds over the 24 actors: sort the actors, shuffle with "
            "numpy.random.default_rng(0).permutation, numpy.array_split into 5 test groups (fold0 test 05 11 12 19 22; "
            "fold1 03 04 07 23 24; fold2 01 09 13 17 21; fold3 06 08 14 18 20; fold4 02 10 15 16); validation = the "
            "first 3 actors of the next fold's test group in shuffled order; train = the other 16 (fold4: 17). "
            "1,440 utterances, 60 per actor; the baselines' protocol (8 classes)."),
        folds=split_units(ravdess, n_folds=5, seed=0, n_valid=3)))

    singers = [v for v in ravdess if v != "ravdess-18"]
    protos.append(Protocol(
        name="ravdess-song-5fold", dataset="ravdess-song", unit="speaker", source=METHODS,
        description=(
            "RAVDESS song (1,012 utterances, 23 singers; actor 18 recorded no song), 5 speaker-independent splits of "
            "16 train / 3 valid / 4 test singers (emotk.data.protocols.split_units, seed 0, n_test 4, n_valid 3: "
            "fold k tests shuffled positions 4k..4k+3 and validates on 4k+4..4k+6, so 20 singers are tested once "
            "and 3 never). Speakers are named like RAVDESS speech ('ravdess-01'). Classes: neutral, calm, happy, "
            "sad, angry, fearful."),
        folds=split_units(singers, n_folds=5, seed=0, n_valid=3, n_test=4)))

    protos.append(Protocol(
        name="cafe-5fold", dataset="cafe", unit="speaker", source=METHODS,
        description=(
            "CaFE (936 utterances, 12 French speakers), 5 speaker-independent splits of 8 train / 2 valid / 2 test "
            "speakers (emotk.data.protocols.split_units, seed 0, n_test 2, n_valid 2: fold k tests shuffled "
            "positions 2k, 2k+1 and validates on 2k+2, 2k+3; 10 speakers are tested once, 2 never). 7 classes."),
        folds=split_units([f"cafe-{i:02d}" for i in range(1, 13)], n_folds=5, seed=0, n_valid=2, n_test=2)))

    emodb = [f"emodb-{s}" for s in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")]
    protos.append(Protocol(
        name="emodb-5fold", dataset="emodb", unit="speaker", source=METHODS,
        description=(
            "EmoDB (535 utterances, 10 German speakers 03 08 09 10 11 12 13 14 15 16), 5 speaker-independent "
            "splits of 6 train / 2 valid / 2 test speakers (emotk.data.protocols.split_units, seed 0, n_test 2, "
            "n_valid 2: the 5 test pairs partition the speakers; validation = the next fold's test pair). "
            "7 classes: neutral, anger, disgust, sadness, boredom, fear, joy."),
        folds=split_units(emodb, n_folds=5, seed=0, n_valid=2, n_test=2)))

    protos.append(Protocol(
        name="iemocap-session5", dataset="iemocap", unit="session", source=METHODS + "; thesis trains on 1-4",
        description=(
            "IEMOCAP, the thesis protocol: sessions Ses01-Ses04 train, Ses05 test. Validation (valid_rule holdout): "
            "10% of the training dialogues (by the 'dialogue' field, whole dialogues so ERC context stays intact; "
            "12 of the 120 dialogues of a full copy) ranked by sha256('0:' + dialogue) move from train to valid. "
            "Full copy: 10,039 utterances; 4-class 5,531, 6-class 7,433 (label maps iemocap-4 / iemocap-6)."),
        valid_rule=dict(IEMOCAP_HOLDOUT),
        folds=[Fold("Ses05", IEMOCAP_SESSIONS[:4], [], ["Ses05"])]))

    protos.append(Protocol(
        name="iemocap-loso", dataset="iemocap", unit="session", source=METHODS + " (leave-one-session-out)",
        description=(
            "IEMOCAP leave-one-session-out: 5 folds named after their test session; the other 4 sessions train. "
            "Validation (valid_rule holdout): 10% of each fold's training dialogues (by 'dialogue'), ranked by "
            "sha256('0:' + dialogue), move from train to valid. Report the mean over the 5 folds."),
        valid_rule=dict(IEMOCAP_HOLDOUT),
        folds=[Fold(s, [t for t in IEMOCAP_SESSIONS if t != s], [], [s]) for s in IEMOCAP_SESSIONS]))

    erc_train = [d for d in IEMOCAP_DIALOGUES if not d.startswith("Ses05")]
    erc_test = [d for d in IEMOCAP_DIALOGUES if d.startswith("Ses05")]
    erc_common = (
        "ERC (whole dialogues, unit 'dialogue'): the 31 Session 5 dialogues test, the 120 of Sessions 1-4 train "
        "or valid. Dialogue names are compared without the dataset prefix (strip_dataset_prefix), so the protocol "
        "applies to the IEMOCAP importer's manifest ('iemocap-Ses01F_impro01') and to transcript copies such as "
        "iemocap-text ('Ses01F_impro01'); any dataset. ")
    protos.append(Protocol(
        name="iemocap-6-erc", dataset="", unit="dialogue", strip_dataset_prefix=True,
        source="DialogueRNN (Majumder et al., AAAI 2019) / COSMIC (Ghosal et al., 2020) IEMOCAP split; " + METHODS,
        description=erc_common + (
            "IEMOCAP-6 (label map iemocap-6): validation = the 12 dialogues of the DialogueRNN/COSMIC benchmark "
            "split, so results compare with published ERC numbers and BASELINES.md: 108 / 12 / 31 dialogues = "
            "5,163 / 647 / 1,623 six-class utterances (7,433)."),
        folds=[Fold("Ses05", sorted(set(erc_train) - set(IEMOCAP_ERC6_VALID)), sorted(IEMOCAP_ERC6_VALID),
                    sorted(erc_test))]))
    erc4_valid = sorted(sorted(erc_train, key=lambda d: _rank_key(0, d))[:12])
    protos.append(Protocol(
        name="iemocap-4-erc", dataset="", unit="dialogue", strip_dataset_prefix=True, source=METHODS,
        description=erc_common + (
            "IEMOCAP-4 (label map iemocap-4; frustrated and the other dropped labels stay in the dialogues as "
            "unlabelled context): validation = 12 of the 120 Session 1-4 dialogues (10%), those first when ranked "
            "by sha256('0:' + dialogue name without prefix); 108 / 12 / 31 dialogues."),
        folds=[Fold("Ses05", sorted(set(erc_train) - set(erc4_valid)), erc4_valid, sorted(erc_test))]))

    improv_folds = []
    for session in range(1, 7):
        female, male = f"msp-improv-F0{session}", f"msp-improv-M0{session}"
        others = [f"msp-improv-{g}0{s}" for s in range(1, 7) for g in "FM" if s != session]
        improv_folds.append(Fold(f"F0{session}", sorted(others), [male], [female]))
        improv_folds.append(Fold(f"M0{session}", sorted(others), [female], [male]))
    protos.append(Protocol(
        name="msp-improv-12fold", dataset="msp-improv", unit="speaker", source=METHODS,
        description=(
            "MSP-IMPROV (8,438 utterances, 12 actors in 6 sessions of one woman + one man), 12 folds leave-two-"
            "speakers-out: each fold is named after its test speaker; validation = the other actor of the same "
            "session; train = the 10 actors of the other 5 sessions. VAD regression (CCC), mean over folds."),
        folds=improv_folds))

    protos.append(_official(
        "meld", "meld-official", "official", source=METHODS + "; MELD label CSVs",
        description=(
            "MELD official partition (unit 'split' as the importer writes it): train -> train, dev -> valid, "
            "test -> test. The label CSVs hold 9,989 / 1,109 / 2,610 utterances in 1,038 / 114 / 280 dialogues; a "
            "prepared manifest is a little smaller where MELD.Raw lacks a clip. 7 classes."),
        train=["train"], valid=["dev"], test=["test"]))

    podcast_desc = (
        "MSP-Podcast challenge partition (Interspeech 2025 naturalistic SER; unit 'split' = Partitions.txt lower-"
        "cased): train -> train, development -> valid, test3 -> test (the challenge test set; its labels are not "
        "public); test1 and test2 belong to no split. METHODS: train 84,260 / dev 31,961 / test 3,200. 8 classes: "
        + ", ".join(MSP_PODCAST_CLASSES) + " (other and no-agreement dropped by the label map). ")
    protos.append(_official(
        "msp-podcast", "msp-podcast-challenge", "challenge", source=METHODS,
        description=podcast_desc + "Valid is the full development set; for model selection the thesis uses its "
        "balanced subset (protocol msp-podcast-challenge-balanced).",
        train=["train"], valid=["development"], test=["test3"]))
    protos.append(_official(
        "msp-podcast", "msp-podcast-challenge-balanced", "challenge", source=METHODS + " (balanced dev)",
        description=podcast_desc + "Valid is the balanced development set used for model selection (valid_rule "
        "balanced): 326 utterances per class, within each class the ids ranked by sha256('0:' + id) "
        "(emotk.data.protocols.balanced_subset); 2,608 utterances; the rest of development is excluded.",
        train=["train"], valid=["development"], test=["test3"],
        valid_rule={"kind": "balanced", "per_class": 326, "label_field": "emotion", "seed": 0,
                    "classes": list(MSP_PODCAST_CLASSES)}))

    protos.append(Protocol(
        name="cmu-mosi-standard", dataset="cmu-mosi", unit="video", source=(
            "CMU Multimodal SDK standard folds (standard_train_fold / standard_valid_fold / standard_test_fold); "
            + METHODS),
        description=(
            "CMU-MOSI (93 videos, 2,199 opinion segments) by video with the CMU Multimodal SDK standard folds: "
            "52 train / 10 valid / 31 test videos = 1,284 / 229 / 686 segments. The thesis uses the split of Lian "
            "et al. (49 / 13 / 31 videos = 1,188 / 325 / 686 segments), whose 3 extra validation videos (96 "
            "segments) are not public as ids: its test set is this test set, and train + valid together are the "
            "same 1,513 segments. Binary sentiment: score < 0 negative, >= 0 positive."),
        folds=[Fold("standard", sorted(MOSI_TRAIN), sorted(MOSI_VALID), sorted(MOSI_TEST))]))

    protos.append(_official(
        "esd", "esd-official", "official", source=METHODS + "; ESD per-emotion block rule",
        description=(
            "ESD (unit 'split' as the importer writes it): within each speaker's 350-utterance block per emotion, "
            "files 1-20 valid, 21-50 test, 51-350 train (field esd_index). For the 10 English speakers 0011-0020 "
            "with 5 emotions: 15,000 train / 1,000 valid / 1,500 test; the Chinese speakers 0001-0010, when "
            "imported, follow the same rule."),
        train=["train"], valid=["valid"], test=["test"]))

    protos.append(_official(
        "daic-woz", "daic-woz-official", "official", source=METHODS + "; DAIC-WOZ official split CSVs",
        description=(
            "DAIC-WOZ official partition by interview (unit 'split'): train -> train, dev -> valid, test -> test "
            "(107 / 35 / 47 participants; the thesis evaluates on dev with 10 s segments, 5 random utterance "
            "samplings). Binary depression label (PHQ-8 >= 10)."),
        train=["train"], valid=["dev"], test=["test"]))
    return protos


# folders of protocols that apply to any dataset (dataset "")
FOLDERS = {"iemocap-6-erc": "iemocap", "iemocap-4-erc": "iemocap"}


def protocol_path(root: Path, proto: Protocol) -> Path:
    return root / (proto.dataset or FOLDERS[proto.name]) / "protocols" / f"{proto.name}.json"


def write_protocols(root: Path) -> list[Path]:
    """Write every protocol under ``root``; returns the paths (sorted)."""
    return sorted(p.save(protocol_path(root, p)) for p in build_protocols())


def check_protocols(root: Path) -> list[str]:
    """Names of committed files under ``root`` that differ from (or lack) what :func:`build_protocols` makes."""
    import tempfile

    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for fresh in write_protocols(Path(tmp)):
            committed = root / fresh.relative_to(tmp)
            if not committed.is_file() or committed.read_bytes() != fresh.read_bytes():
                bad.append(str(committed))
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="root folder (default: data_manifests/)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    if args.check:
        bad = check_protocols(args.out)
        for path in bad:
            print(f"differs: {path}", file=sys.stderr)
        return 1 if bad else 0
    for path in write_protocols(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
