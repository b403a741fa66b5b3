"""`emotk demo` end to end through the real entry point (the README Quick start's main job)."""

import json
from pathlib import Path

import pytest
from conftest import have_espeak

pytestmark = pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)")


def test_demo_runs_every_stage(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMOTK_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a relative output folder, as `make demo` uses (relative paths must survive)
    out = tmp_path / "demo"
    # the zest stage with 2 training epochs (the shipped 20 take ~4 min here); its recipe is tested on its own
    res = cli("--json", "demo", "-o", "demo", "--set", "zest_set=[train.epochs=2,speaker_train.epochs=1]",
              "--set", "zest_vocoder_steps=10", "--set", "est_set=[limit=2]")
    assert res.code == 0, res.err[-2000:]
    summary = json.loads(res.out)
    st = summary["stages"]
    assert set(st) == {"corpus", "validate", "split", "prosody", "ser", "erc", "care", "zest", "est"}
    assert st["corpus"]["utterances"] >= 250 and st["corpus"]["speakers"] >= 6
    assert st["validate"]["ok"] and st["validate"]["errors"] == 0
    assert len(st["split"]["folds"]) == 3
    prosody = st["prosody"]["per_style"]
    assert prosody["sad"]["mean_f0_hz"] < prosody["angry"]["mean_f0_hz"]
    assert prosody["sad"]["words_per_s"] < prosody["angry"]["words_per_s"]
    assert prosody["sad"]["level_dbfs"] < prosody["angry"]["level_dbfs"] - 6
    # 4 balanced styles: chance is 25 %; the lld head must do clearly better on held-out speakers
    assert st["ser"]["test"]["balanced_accuracy"]["mean"] > 0.45
    strong = st["ser"]["strong"]  # emotk's recipe beside the thesis's, on the same features and folds
    assert strong["config"] == "ser/demo-strong" and strong["test"]["balanced_accuracy"]["mean"] > 0.45
    assert len(strong["search"]) == 3 and all("train.optim.lr" in v for v in strong["search"].values())
    erc = st["erc"]  # hierarchical HCAM on the demo dialogues: text, speech, then their fusion
    assert erc["dialogues"] == {"train": 4, "valid": 1, "test": 1} and erc["turns"] == 42
    assert [erc[k]["stage"] for k in ("text", "speech", "fusion")] == [2, 2, 3]
    assert erc["speech"]["test"]["weighted_f1"] > 0.5  # the demo styles differ acoustically (chance: 0.25)
    care = st["care"]
    assert care["pretrain"]["semantic_loss"]["last"] < care["pretrain"]["semantic_loss"]["first"]
    assert care["pretrain"]["acoustic_loss"]["last"] < care["pretrain"]["acoustic_loss"]["first"]
    assert set(care["care"]["test"]) >= {"weighted_f1", "balanced_accuracy"} and set(care["untrained"]["test"])
    zest = st["zest"]
    assert zest["conversions"] == 288 and zest["durations"]["all_follow_predictions"]
    assert Path(zest["plot"]).is_file() and all(Path(w).is_file() for w in zest["wavs"])
    voc = zest["vocoder"]
    assert voc["steps"] == 10 and voc["mel_l1_first"] > 0 and Path(voc["example"]).is_file()
    est = st["est"]
    assert set(est["systems"]) == {"s2s-zest", "world-baseline", "copy-source"}
    assert est["coverage"] == {"scored": 30, "planned": 30, "complete": True}  # 5 settings x 2 pairs x 3 systems
    assert est["systems"]["copy-source"]["SSST"]["spk_sim"] > 0.99 and Path(est["report"]).is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["config_hash"] == summary["config_hash"] and "demo_manifest" in run["inputs"]
    assert json.loads((out / "summary.json").read_text())["stages"]["ser"]["folds"] == 3
    # the human summary of the same results, also when a style had no voiced output (None measures)
    from emotk.cli.demo import _human

    capsys.readouterr()
    summary["stages"]["zest"]["settings"]["SSST"]["per_target"]["sad"]["shift_vs_reconstruction"] = None
    summary["stages"]["zest"]["moved_in_style_direction"] = None
    _human(summary)
    shown = capsys.readouterr().out
    assert "S2S-ZEST" in shown and "style direction –" in shown and "EST report" in shown
    assert "SER recipes: thesis = ser/demo, strong = ser/demo-strong (emotk's" in shown
    assert "emotion recognition in conversations on the demo dialogues" in shown
    assert "not comparable with the thesis" in shown  # Emo-Sim from the bundle's own encoder is flagged
    again = cli("demo", "-o", out)
    assert again.code == 1 and "--overwrite" in again.err
