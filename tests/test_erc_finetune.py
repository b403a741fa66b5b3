"""HCAM's fine-tuned stage I (``embed.<m>.finetune``, emotk.models.erc.finetune) on the toy corpus of test_erc.py.

Text: a random tiny RoBERTa fine-tuned with the HCAM text head on single utterances; speech: tiny-wavlm (CNN frozen,
transformer fine-tuned) on synthetic tones whose pitch follows the label. Checked: the loss falls, the encoder's
weights move (the speech CNN's do not), export -> reload gives identical embeddings, predict / evaluate / online
agree with training's reports, stage II on the run (``embed.text.from_run``) trains from cached utterance embeddings
and predicts through both stages, config errors name the key, and the full-size configs instantiate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import json_out, run_cli
from test_erc import PHRASES, _corpus, _online_equals_batch

from emotk.errors import ConfigError
from emotk.recipes import configs_dir


def _recipe(name: str) -> Path:
    return configs_dir() / f"{name}.yaml"


def _train_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["erc", "train", "-c", "erc/tiny-stage1", "--data", str(data), "--set", f"embed.cache_dir={cache}",
            "-o", str(out), *extra]


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]


def _weights(export: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(export / "model.safetensors"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("erc-ft")
    return {"root": root, "data": _corpus(root / "toy.jsonl"), "cache": root / "features"}


@pytest.fixture(scope="module")
def text1(toy):
    out = toy["root"] / "text1"
    code, stdout, stderr = run_cli("--json", *_train_args(toy["data"], out, toy["cache"]))
    assert code == 0, stderr
    return {"out": out, "summary": json_out(stdout)}


def test_text_stage1_finetunes_the_encoder(text1):
    from emotk import hub

    out, summary = text1["out"], text1["summary"]
    assert summary["stage"] == 1 and summary["embed"]["text"]["finetune"] is True
    losses = _losses(out / "runs" / "seed0")
    assert len(losses) >= 3 and losses[-1] < 0.7 * losses[0], losses
    assert summary["test"]["weighted_f1"]["mean"] > 0.5  # words decide the label: far above chance (0.25)
    meta = json.loads((out / "export" / "config.json").read_text())
    assert meta["finetune"]["modality"] == "text" and meta["finetune"]["encoder"] == "tiny-roberta"
    assert (out / "export" / "tokenizer").is_dir()
    trained = _weights(out / "export")
    pretrained = hub.load("tiny-roberta").model.state_dict()
    moved = [k for k, v in pretrained.items() if f"encoder.{k}" in trained
             and not torch.equal(trained[f"encoder.{k}"], v) and "pooler" not in k]
    layer_keys = [k for k in pretrained if "encoder.layer." in k]
    assert len(moved) > len(layer_keys) // 2, "the transformer layers were not fine-tuned"
    # the spliced layers feed the bi-GRU (2 layers of 32 dims concatenated)
    assert trained["head.gru.gru.weight_ih_l0"].shape[1] == 2 * 32


def test_predict_evaluate_and_online_agree_with_training(text1, toy):
    out = text1["out"]
    code, stdout, stderr = run_cli("erc", "predict", str(toy["data"]), "-m", str(out))
    assert code == 0, stderr
    got = {r["id"]: r for r in map(json.loads, stdout.splitlines())}
    want = [json.loads(x) for x in (out / "runs/seed0/eval/test/predictions.jsonl").read_text().splitlines()]
    assert want and all(w["id"] in got for w in want)
    for w in want:
        for c, p in w["probabilities"].items():
            assert got[w["id"]]["probabilities"][c] == pytest.approx(p, abs=1e-5)
    code, stdout, stderr = run_cli("--json", "erc", "evaluate", str(out))
    assert code == 0, stderr
    again = json_out(stdout)
    report = json.loads((out / "runs/seed0/eval/test/report.json").read_text())
    for k, v in report["metrics"].items():
        assert again["aggregate"][k]["mean"] == pytest.approx(v, abs=1e-5), k
    assert report["num_turns"] == len(want)
    _online_equals_batch(out, toy["data"])  # stage I has no context: online == batch whatever model.context says


def test_export_reload_gives_identical_embeddings(tmp_path):
    """Save -> reload of both modalities (the speech upstream keeps aliased modules: save_model drops them)."""
    from emotk.core.config import resolve
    from emotk.models.erc.config import ErcConfig
    from emotk.models.erc.export import load_export, write_export
    from emotk.models.erc.finetune import build_net
    from emotk.models.erc.model import ErcDims

    cfg = resolve(ErcConfig, "erc.hcam", _recipe("erc/tiny-stage1")).config
    rng = np.random.default_rng(0)
    for mod, items in (("text", ["i am so happy today", "he passed away"]),
                       ("speech", [0.1 * rng.standard_normal(16000).astype(np.float32),
                                   0.1 * rng.standard_normal(9000).astype(np.float32)])):
        torch.manual_seed(0)
        net = build_net(cfg.embed.get(mod), 4, 0.0)
        with torch.no_grad():  # move every head parameter off its initial value
            for p in net.head.parameters():
                p.add_(0.01)
        folder = write_export(tmp_path / mod, net, cfg, ErcDims({mod: net.description["dim"]}, 4), list("abcd"))
        again, meta, _ = load_export(folder)
        assert meta["finetune"]["modality"] == mod
        logits_a, emb_a = net.run(items)
        logits_b, emb_b = again.run(items)
        assert torch.allclose(emb_a, emb_b, atol=1e-6) and torch.allclose(logits_a, logits_b, atol=1e-6)
        alone, _ = again.run(items[1:])  # padding changes nothing
        assert torch.allclose(alone[0], logits_b[1], atol=1e-5)


def test_stage2_on_the_finetuned_stage1(text1, toy, tmp_path):
    """Stage II reads the fine-tuned run's utterance embeddings from the feature cache (computed once, keyed by the
    weights), and predict / --online embed new turns through the stage-I model."""
    from emotk.features.cache import FeatureCache
    from emotk.models.erc.export import load_export
    from emotk.models.erc.finetune import TEXT_KIND

    cache = tmp_path / "features"
    args = ["erc", "train", "-c", "erc/tiny", "--data", str(toy["data"]), "--set", f"embed.cache_dir={cache}",
            "--set", f"embed.text.from_run={text1['out']}", "--set", "model.context=causal", "--set", "train.epochs=8"]
    code, stdout, stderr = run_cli("--json", *args, "-o", str(tmp_path / "s2"))
    assert code == 0, stderr
    summary = json_out(stdout)
    assert summary["stage"] == 2 and summary["test"]["weighted_f1"]["mean"] > 0.5
    folders = sorted(cache.glob(f"set-*/{TEXT_KIND}-*"))  # one sharded cache per utterance set
    assert len(folders) == 1
    net, _, _ = load_export(text1["out"])
    stored = FeatureCache(folders[0])
    _, emb = net.run(["I am so happy today"])
    rec = next(json.loads(x) for x in toy["data"].read_text().splitlines()
               if json.loads(x)["text"] == "I am so happy today")
    assert np.allclose(stored.get(rec["id"], "embedding"), emb[0].numpy(), atol=1e-5)
    meta = json.loads((tmp_path / "s2" / "export" / "config.json").read_text())
    assert meta["dims"]["inputs"] == {"text": 32}  # the head's embedding: 2 x gru_hidden 16
    before = {p: p.stat().st_mtime_ns for p in folders[0].rglob("*") if p.is_file()}
    code, _, stderr = run_cli(*args, "-o", str(tmp_path / "s2b"))  # a second experiment reuses the cache
    assert code == 0, stderr
    assert {p: p.stat().st_mtime_ns for p in folders[0].rglob("*") if p.is_file()} == before
    _online_equals_batch(tmp_path / "s2", toy["data"])  # predict (batch) and --online through both stages
    code, stdout, stderr = run_cli("erc", "predict", str(toy["data"]), "-m", str(tmp_path / "s2"))
    want = [json.loads(x) for x in (tmp_path / "s2/runs/seed0/eval/test/predictions.jsonl").read_text().splitlines()]
    got = {r["id"]: r for r in map(json.loads, stdout.splitlines())}
    for w in want:
        for c, p in w["probabilities"].items():
            assert got[w["id"]]["probabilities"][c] == pytest.approx(p, abs=1e-4)


def _speech_corpus(root: Path) -> Path:
    """The toy dialogues with a tone per turn whose pitch follows the label (plus noise)."""
    import soundfile as sf

    pitch = dict(zip(sorted(PHRASES), (150.0, 300.0, 600.0, 1200.0)))
    rng = np.random.default_rng(0)
    src = _corpus(root / "text.jsonl", dialogues=12, turns=5)
    lines = []
    for line in src.read_text().splitlines():
        rec = json.loads(line)
        n = int(16000 * rng.uniform(0.4, 0.8))
        t = np.arange(n) / 16000
        wav = 0.3 * np.sin(2 * np.pi * pitch[rec["emotion"]] * t) + 0.02 * rng.standard_normal(n)
        path = root / "wav" / f"{rec['id']}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), 16000)
        lines.append(json.dumps({**rec, "path": str(path)}) + "\n")
    out = root / "speech.jsonl"
    out.write_text("".join(lines))
    return out


def test_speech_stage1_finetunes_the_transformer_not_the_cnn(tmp_path):
    from emotk import hub

    data = _speech_corpus(tmp_path)
    out = tmp_path / "speech1"
    code, stdout, stderr = run_cli("--json", *_train_args(data, out, tmp_path / "features", "--set",
                                                          "model.modalities=[speech]", "--set", "train.epochs=5"))
    assert code == 0, stderr
    assert json_out(stdout)["modalities"] == ["speech"]
    losses = _losses(out / "runs" / "seed0")
    assert losses[-1] < 0.8 * losses[0], losses
    from emotk.models.erc.export import load_export

    trained = load_export(out / "export")[0].encoder.model.state_dict()  # the exported weights, reloaded
    pretrained = hub.load("tiny-wavlm").model.state_dict()
    cnn = [k for k in pretrained if k.startswith("feature_extractor.")]
    layers = [k for k in pretrained if k.startswith("encoder.layers.")]
    assert cnn and all(torch.equal(trained[k], pretrained[k]) for k in cnn)
    assert sum(not torch.equal(trained[k], pretrained[k]) for k in layers) > len(layers) // 2
    meta = json.loads((out / "export" / "config.json").read_text())
    assert meta["finetune"]["modality"] == "speech" and meta["dims"]["inputs"] == {"speech": 32}
    # predict reads the audio of each turn and equals training's report
    code, stdout, stderr = run_cli("erc", "predict", str(data), "-m", str(out))
    assert code == 0, stderr
    got = {r["id"]: r for r in map(json.loads, stdout.splitlines())}
    for w in map(json.loads, (out / "runs/seed0/eval/test/predictions.jsonl").read_text().splitlines()):
        for c, p in w["probabilities"].items():
            assert got[w["id"]]["probabilities"][c] == pytest.approx(p, abs=1e-4)


def test_reference_compat_keeps_the_speech_encoder_frozen(tmp_path):
    from emotk.core.config import resolve
    from emotk.models.erc.config import ErcConfig
    from emotk.models.erc.finetune import build_net, parameter_counts

    cfg = resolve(ErcConfig, "erc.hcam", _recipe("erc/tiny-stage1"), ["model.modalities=[speech]",
                                                             "embed.speech.compat=reference"]).config
    net = build_net(cfg.embed.speech, 4, 0.0)
    assert net.encoder_parameters() == [] and all(p.requires_grad for p in net.head.parameters())
    assert parameter_counts(cfg.embed.speech, 4)["encoder_trainable"] == 0


@pytest.mark.parametrize("sets, message", [
    (["model.stage=2"], "embed.text.finetune trains stage I: set model.stage=1"),
    (["embed.text.from_run=somewhere"], "exclude each other"),
    (["embed.text.kind=upstream"], "embed.text.kind"),
    (["embed.text.kernel_size=2", "model.modalities=[speech]", "embed.speech.kernel_size=2"], "kernel_size"),
    (["embed.text.max_tokens=2"], "embed.text.max_tokens"),
])
def test_config_errors_name_the_key(sets, message):
    from emotk.core.config import resolve
    from emotk.models.erc.config import ErcConfig

    with pytest.raises(ConfigError, match=message):
        resolve(ErcConfig, "erc.hcam", _recipe("erc/tiny-stage1"), sets)


def test_cli_errors_are_one_line(toy, tmp_path):
    code, _, stderr = run_cli(*_train_args(toy["data"], tmp_path / "o", toy["cache"], "--set",
                                           "embed.text.spliced_layers=4"))  # tiny-roberta has 3 hidden states
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "embed.text.spliced_layers" in stderr, stderr
    assert not (tmp_path / "o").exists()  # checked before the output folder is made
    code, _, stderr = run_cli(*_train_args(toy["data"], tmp_path / "o", toy["cache"], "-c",
                                           "erc/iemocap-6-text-roberta-stage1", "--set", "data.protocol=manifest-split",
                                           "--set", "data.label_map="))
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "roberta-large" in stderr, stderr
    assert not (tmp_path / "o").exists()
    code, _, stderr = run_cli("erc", "embed", "-c", "erc/tiny-stage1", "--data", str(toy["data"]), "-o",
                              str(tmp_path / "e"))
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "erc train --stage 1" in stderr, stderr


@pytest.mark.parametrize("recipe, modality, encoder", [
    ("erc/iemocap-6-text-roberta-stage1", "text", 355_359_744),  # RoBERTa-large
    ("erc/iemocap-6-speech-hubert-stage1", "speech", 315_438_720),  # HuBERT-large (HF HubertModel)
])
def test_full_size_configs_instantiate(recipe, modality, encoder, capsys):
    """The full-size recipes resolve and their networks are sized without weights (meta device)."""
    from emotk.core.config import resolve
    from emotk.models.erc.config import ErcConfig
    from emotk.models.erc.finetune import parameter_counts

    cfg = resolve(ErcConfig, "erc.hcam", _recipe(recipe)).config
    assert cfg.model.stage == 1 and cfg.embed.get(modality).finetune
    counts = parameter_counts(cfg.embed.get(modality), 6)
    with capsys.disabled():
        print(f"\n{recipe}: {json.dumps(counts)}")
    assert counts["encoder"] == encoder and 0 < counts["head"] < 5_000_000
    if modality == "speech":  # the CNN is frozen: about 4.2M parameters
        assert 4_000_000 < counts["encoder"] - counts["encoder_trainable"] < 5_000_000
    else:
        assert counts["encoder_trainable"] == counts["encoder"]
