"""TIMIT importer on a fake copy of the LDC layout with real NIST SPHERE headers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotk.data.prepare import get_importer, timit
from emotk.data.prepare.base import PrepareOptions, write_result
from emotk.errors import DataError, UsageError


def _sphere(path: Path) -> None:
    """A 0.2 s NIST SPHERE file (what the LDC release ships under the .WAV name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    sf.write(str(path), (0.1 * rng.standard_normal(3200)).astype(np.float32), 16000, format="NIST", subtype="PCM_16")


def _utt(spk_dir: Path, utt: str, text: str, upper: bool = True) -> None:
    wav, txt = (f"{utt}.WAV", f"{utt}.TXT") if upper else (f"{utt.lower()}.wav", f"{utt.lower()}.txt")
    _sphere(spk_dir / wav)
    (spk_dir / txt).write_text(f"0 46797 {text}\n")


def _tree(root: Path) -> Path:
    base = root / "TIMIT"
    fcjf0 = base / "TRAIN" / "DR1" / "FCJF0"
    _utt(fcjf0, "SA1", "She had your dark suit in greasy wash water all year.")
    _utt(fcjf0, "SX127", "The emperor had a mean temper.")
    _utt(fcjf0, "SI1027", "Even then, if she took one step forward he could catch her.")
    (fcjf0 / "SI1657.WAV").write_bytes(b"NIST_1A\n   1024\nbroken")  # corrupt
    (fcjf0 / "SI1657.TXT").write_text("0 100 Broken file.\n")
    (fcjf0 / "SA1.PHN").write_text("0 3050 h#\n")
    mdab0 = base / "TEST" / "DR8" / "MDAB0"
    _utt(mdab0, "SA2", "Don't ask me to carry an oily rag like that.")
    _sphere(mdab0 / "SX139.WAV")  # no transcript
    return base


def _opts(tmp_path: Path, **extra) -> PrepareOptions:
    return PrepareOptions(out_dir=tmp_path / "out", workers=2, extra=extra)


def test_contract_and_text():
    assert get_importer("timit") is timit
    assert timit.DATASET == "timit" and timit.DESCRIPTION and "DR1" in timit.LAYOUT
    assert set(timit.OPTIONS) == {"include_sa"}


def test_read_text(tmp_path):
    p = tmp_path / "SA1.TXT"
    p.write_text("0 46797 She had your dark suit in greasy wash water all year.\n")
    assert timit.read_text(p) == "She had your dark suit in greasy wash water all year."
    p.write_text("She had\n")
    assert timit.read_text(p) is None


def test_prepare_fake_tree(tmp_path):
    _tree(tmp_path / "data")
    opts = _opts(tmp_path)
    result = timit.prepare(tmp_path / "data", opts)  # TIMIT/ one level down
    summary = write_result(result, opts)
    recs = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in recs}
    assert list(by_id) == ["timit-FCJF0_SA1", "timit-FCJF0_SI1027", "timit-FCJF0_SX127", "timit-MDAB0_SA2",
                           "timit-MDAB0_SX139"]
    sa1 = by_id["timit-FCJF0_SA1"]
    assert sa1 == {**sa1, "dataset": "timit", "speaker": "timit-FCJF0", "gender": "F", "language": "en",
                   "emotion": "neutral", "dialect": "DR1", "sentence": "SA1", "sentence_type": "SA",
                   "split": "train", "text": "She had your dark suit in greasy wash water all year.", "sr": 16000,
                   "duration": 0.2}
    assert sa1["path"] == "../data/TIMIT/TRAIN/DR1/FCJF0/SA1.WAV"
    assert (by_id["timit-MDAB0_SA2"]["gender"], by_id["timit-MDAB0_SA2"]["split"]) == ("M", "test")
    assert by_id["timit-MDAB0_SA2"]["dialect"] == "DR8" and "text" not in by_id["timit-MDAB0_SX139"]
    warnings = "\n".join(result.warnings)
    assert "timit-FCJF0_SI1657" in warnings  # corrupt, skipped
    assert "no readable .TXT transcript" in warnings
    assert "found 6 utterances, the official release has 6300" in warnings
    assert summary["counts"]["split"] == {"test": 2, "train": 3} and summary["label_maps"] == {}


def test_lowercase_layout_and_include_sa(tmp_path):
    spk = tmp_path / "timit" / "data" / "train" / "dr3" / "mwjg0"
    _utt(spk, "SA1", "She had your dark suit.", upper=False)
    _utt(spk, "SX4", "A sentence.", upper=False)
    result = timit.prepare(tmp_path / "timit", _opts(tmp_path, include_sa="false"))
    assert [(r["id"], r["speaker"], r["dialect"], r["text"]) for r in result.records] == [
        ("timit-MWJG0_SX4", "timit-MWJG0", "DR3", "A sentence.")]
    assert result.expected["utterances"] == 5040
    with pytest.raises(UsageError, match="include_sa"):
        timit.prepare(tmp_path / "timit", _opts(tmp_path, include_sa="maybe"))


def test_shorten_sphere_gives_clear_error(tmp_path):
    spk = tmp_path / "TIMIT" / "TRAIN" / "DR1" / "FCJF0"
    spk.mkdir(parents=True)
    header = b"NIST_1A\n   1024\nsample_coding -s26 pcm,embedded-shorten-v2.00\nend_head\n"
    (spk / "SA1.WAV").write_bytes(header.ljust(1024, b" ") + b"\x01\x02" * 100)
    with pytest.raises(DataError, match="shorten-compressed"):
        timit.prepare(tmp_path / "TIMIT", _opts(tmp_path))


def test_all_unreadable_is_an_error(tmp_path):
    spk = tmp_path / "TIMIT" / "TEST" / "DR2" / "MABC0"
    spk.mkdir(parents=True)
    (spk / "SA1.WAV").write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="none of the 1 TIMIT audio files could be read"):
        timit.prepare(tmp_path / "TIMIT", _opts(tmp_path))


def test_wrong_root(tmp_path):
    (tmp_path / "corpus" / "wavs").mkdir(parents=True)
    with pytest.raises(DataError, match="TRAIN/TEST"):
        timit.prepare(tmp_path / "corpus", _opts(tmp_path))


def test_cli_prepare(tmp_path, capsys):
    from emotk.cli.main import main
    _tree(tmp_path / "data")
    with pytest.raises(SystemExit) as exc:
        main(["--json", "data", "prepare", "timit", str(tmp_path / "data"), "-o", str(tmp_path / "cli"),
              "--option", "include_sa=no"])
    assert exc.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 3 and summary["expected"]["utterances"] == 5040
