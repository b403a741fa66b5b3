"""The CARE stage of ``emotk demo`` (emotk.demo.care): pre-train the tiny CARE a few steps on a small
espeak-ng corpus, then SUPERB SER with the trained and the untrained export (skipped without espeak-ng)."""

from __future__ import annotations

import json

import pytest
from conftest import have_espeak

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread (see conftest.one_thread)


def test_care_demo_stage(tmp_path):
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    import torch

    from emotk.data.protocols import Fold, Protocol
    from emotk.data.synth import SynthConfig, _sentences, _speakers, ensure_demo_corpus
    from emotk.demo.care import care_demo_stage
    from emotk.models.care.export import load_export

    manifest = ensure_demo_corpus(tmp_path / "cache", cfg=SynthConfig(speakers=_speakers()[:3],
                                                                      sentences=_sentences()[:2], dialogues=[]))
    speakers = sorted({json.loads(x)["speaker"] for x in manifest.read_text().splitlines()})
    protocol = tmp_path / "protocol.json"
    Protocol(name="care-demo-test", unit="speaker", dataset="demo",
             folds=[Fold("f0", train=[speakers[0]], valid=[speakers[1]], test=[speakers[2]]),
                    Fold("f1", train=[speakers[1]], valid=[speakers[2]], test=[speakers[0]])]).save(protocol)
    out = tmp_path / "care"
    result = care_demo_stage(manifest, protocol, out, seed=0, steps=30)

    pre = result["pretrain"]
    assert pre["steps"] == 30 and pre["seconds"] > 0
    for key in ("semantic_loss", "acoustic_loss"):
        assert pre[key]["last"] < 0.9 * pre[key]["first"], (key, pre[key])
    for name, where in (("care", out / "pretrain"), ("untrained", out / "untrained")):
        r = result[name]
        assert r["upstream"] == f"care:{where}" and r["folds"] == 2
        assert set(r["test"]) == {"weighted_f1", "balanced_accuracy", "accuracy", "macro_f1"}
        for m in r["test"].values():
            assert 0.0 <= m["mean"] <= 1.0 and m["std"] >= 0.0
    # "untrained" is exactly the trainer's starting point: same architecture, weights differ only by the steps
    trained, initial = load_export(out / "pretrain"), load_export(out / "untrained")
    assert json.loads((out / "untrained" / "care.json").read_text())["arch"] == \
        json.loads((out / "pretrain" / "export" / "care.json").read_text())["arch"]
    a, b = trained.state_dict(), initial.state_dict()
    assert a.keys() == b.keys()
    changed = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert any(k.startswith("trunk.") for k in changed) and any(k.startswith("semantic.down") for k in changed)
    assert not any(k.startswith("semantic.layers.") for k in changed)  # the frozen text layers
