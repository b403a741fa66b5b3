"""S2S-ZEST vocoder: BigVGAN generator, anti-aliasing, discriminators, losses, GAN training, export, chunking."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emotk.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "transfer" / "vocoder-tiny.yaml"
BASE = REPO / "configs" / "transfer" / "vocoder.yaml"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: these models are small, and a second thread collapses when another job holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_cfg(*overrides: str):
    from emotk.core.config import resolve
    from emotk.models.zest.vocoder.config import VocoderConfig

    return resolve(VocoderConfig, "transfer.vocoder", TINY, list(overrides))


def _tiny_generator(seed: int = 0):
    from emotk.models.zest.vocoder.generator import VocoderGenerator

    torch.manual_seed(seed)
    return VocoderGenerator(_tiny_cfg().config.generator).eval()


def _items(n: int = 3, frames: int = 40, seed: int = 0) -> list[dict]:
    """Harmonic 'utterances' whose waveform follows their F0 track (voiced except the first 5 frames)."""
    rng = np.random.default_rng(seed)
    items = []
    for u in range(n):
        f0 = np.full(frames, 110.0 + 40 * u, dtype=np.float32)
        f0[:5] = 0.0
        f0_s = np.repeat(f0, 320)
        phase = 2 * np.pi * np.cumsum(f0_s) / 16000
        wav = ((0.3 * np.sin(phase) + 0.1 * np.sin(2 * phase)) * (f0_s > 0)).astype(np.float32)
        items.append({"tokens": rng.integers(0, 100, frames), "f0": f0,
                      "speaker": rng.standard_normal(128).astype(np.float32),
                      "emotion": rng.standard_normal(128).astype(np.float32), "wav": wav})
    return items


# ---- configs, generator construction -----------------------------------------------------------------------------
def test_shipped_configs_resolve_and_base_yaml_holds_the_thesis_values():
    from emotk.core.config import resolve, to_dict
    from emotk.models.zest.vocoder.config import VocoderConfig

    base = resolve(VocoderConfig, "transfer.vocoder", BASE).config
    assert to_dict(base) == to_dict(VocoderConfig())
    g = base.generator
    assert g.cond_channels == 512 and g.initial_channels == 512
    assert g.upsample_rates == [5, 4, 4, 2, 2] and g.upsample_kernels == [11, 8, 8, 4, 4]
    assert base.discriminator.mrd_resolutions == [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
    assert base.loss.lambda_mel == 45 and base.loss.lambda_fm == 2 and base.loss.fmax == 8000
    assert base.train.optim.betas == [0.8, 0.99] and base.train.scheduler.gamma == 0.9999996
    assert base.data.segment_samples == 8960 and base.train.batch_size == 16
    _tiny_cfg().config.validate()


def test_base_generator_has_about_14m_parameters_and_maps_frames_to_320_samples():
    from emotk.models.zest.vocoder.config import GeneratorConfig
    from emotk.models.zest.vocoder.generator import VocoderGenerator, count_parameters

    torch.manual_seed(0)
    gen = VocoderGenerator(GeneratorConfig())
    n = count_parameters(gen)
    assert 13_000_000 < n < 16_000_000, n  # 14.81M
    assert gen.hop == 320
    with torch.no_grad():
        y = gen(torch.randint(0, 100, (2, 3)), torch.full((2, 3), 120.0), torch.randn(2, 128), torch.randn(2, 128))
    assert y.shape == (2, 960) and torch.isfinite(y).all() and y.abs().max() <= 1.0


def test_upsample_product_must_equal_the_hop():
    from emotk.models.zest.vocoder.config import GeneratorConfig
    from emotk.models.zest.vocoder.generator import VocoderGenerator, check_hop

    with pytest.raises(ConfigError, match=r"multiply to 160.*HOP = 320"):
        VocoderGenerator(GeneratorConfig(upsample_rates=[5, 4, 4, 2, 1], upsample_kernels=[11, 8, 8, 4, 3]))
    with pytest.raises(ConfigError, match="320"):
        check_hop([8, 8, 2, 2])
    check_hop([5, 4, 4, 2, 2])
    with pytest.raises(ConfigError, match="upsample_kernels"):
        GeneratorConfig(upsample_kernels=[11, 8, 8, 4, 5]).validate()  # (kernel - rate) odd


def test_generator_rejects_mismatched_inputs():
    gen = _tiny_generator()
    with pytest.raises(DataError, match="same"):
        gen(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 6), torch.zeros(1, 128), torch.zeros(1, 128))
    with pytest.raises(DataError, match=r"\[0, 100\)"):
        gen(torch.full((1, 5), 100), torch.zeros(1, 5), torch.zeros(1, 128), torch.zeros(1, 128))
    with pytest.raises(DataError, match="64/128"):
        gen(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5), torch.zeros(1, 64), torch.zeros(1, 128))


# ---- building blocks ---------------------------------------------------------------------------------------------
def test_antialiasing_filters_have_unit_dc_gain_and_suppress_aliases():
    from emotk.models.zest.vocoder.resample import AntiAliasedActivation, DownSample1d, UpSample1d, kaiser_sinc_filter

    taps = kaiser_sinc_filter(0.25, 0.3, 12)
    assert taps.shape == (12,) and abs(float(taps.sum()) - 1.0) < 1e-6
    assert torch.allclose(taps, taps.flip(0))  # symmetric: linear phase
    const = torch.full((2, 3, 64), 0.7)
    up, down = UpSample1d(2, 12), DownSample1d(2, 12)
    assert up(const).shape == (2, 3, 128) and torch.allclose(up(const), torch.full((2, 3, 128), 0.7), atol=1e-5)
    assert down(const).shape == (2, 3, 32) and torch.allclose(down(const), torch.full((2, 3, 32), 0.7), atol=1e-5)
    n = torch.arange(512, dtype=torch.float32)
    low = torch.sin(2 * math.pi * 0.02 * n).view(1, 1, -1)
    high = torch.sin(2 * math.pi * 0.45 * n).view(1, 1, -1)  # would alias to 0.05 after decimation
    assert down(low)[..., 20:-20].abs().max() > 0.9  # pass band kept
    assert down(high)[..., 20:-20].abs().max() < 0.1  # stop band removed before decimation
    act = AntiAliasedActivation(torch.nn.Identity(), 2, 12)
    assert torch.allclose(act(low)[..., 20:-20], low[..., 20:-20], atol=0.02)  # up + down ~ identity in band


def test_snakebeta_shapes_init_and_gradients():
    from emotk.models.zest.vocoder.activations import SnakeBeta

    act = SnakeBeta(4, logscale=True)
    assert act.alpha.shape == (4,) and act.beta.shape == (4,)
    x = torch.randn(2, 4, 10, requires_grad=True)
    y = act(x)
    assert y.shape == x.shape
    assert torch.allclose(y, x + torch.sin(x) ** 2, atol=1e-6)  # log-scale init: alpha = beta = 1
    y.sum().backward()
    assert act.alpha.grad is not None and act.beta.grad is not None and act.alpha.grad.abs().sum() > 0
    with torch.no_grad():
        act.alpha.fill_(math.log(2.0))
        act.beta.fill_(math.log(4.0))
    assert torch.allclose(act(x), x + torch.sin(2 * x) ** 2 / 4, atol=1e-5)


def test_discriminator_output_shapes():
    from emotk.models.zest.vocoder.config import DiscriminatorConfig
    from emotk.models.zest.vocoder.discriminators import build_mpd, build_mrd

    cfg = DiscriminatorConfig(mpd_periods=[2, 3, 5], mpd_channels=[4, 8, 8], mrd_resolutions=[[512, 50, 240],
                                                                                             [1024, 120, 600]],
                              mrd_channels=4)
    mpd, mrd = build_mpd(cfg), build_mrd(cfg)
    real, fake = torch.randn(2, 4000), torch.randn(2, 4000)
    rl, fl, rf, ff = mpd(real, fake)
    assert len(rl) == len(fl) == len(rf) == 3
    assert all(t.dim() == 2 and t.shape[0] == 2 for t in rl + fl)
    assert all(len(f) == 4 for f in rf)  # 3 convs + post
    assert rf[1][0].shape[-1] == 3  # period-3 columns
    rl, fl, rf, ff = mrd(real, fake)
    assert len(rl) == 2 and all(len(f) == 6 for f in rf)  # 5 convs + post
    assert rf[0][0].shape[-1] == 257 and rf[1][0].shape[-1] == 513  # n_fft/2 + 1 frequency bins
    assert all(a.shape == b.shape for x, y in zip(rf, ff) for a, b in zip(x, y))


def test_losses_are_sane():
    from emotk.models.zest.vocoder import losses as L
    from emotk.models.zest.vocoder.config import LossConfig

    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert float(L.discriminator_loss(ones, zeros)) == 0.0
    assert float(L.discriminator_loss(zeros, ones)) == pytest.approx(2.0)
    assert float(L.generator_adversarial_loss(ones)) == 0.0
    assert float(L.generator_adversarial_loss(zeros)) == pytest.approx(1.0)
    fm = [[torch.ones(2, 3), torch.zeros(2, 4)]]
    assert float(L.feature_matching_loss(fm, fm)) == 0.0
    assert float(L.feature_matching_loss(fm, [[torch.zeros(2, 3), torch.zeros(2, 4)]])) == pytest.approx(1.0)
    from emotk.features.mel import slaney_mel_filterbank

    basis = slaney_mel_filterbank(16000, 1024, 80, 0.0, 8000.0)
    assert basis.shape == (80, 513) and (basis >= 0).all() and (basis.max(axis=1) > 0).all()
    mel = L.MelSpectrogram(LossConfig())
    t = torch.arange(8960) / 16000
    a = 0.5 * torch.sin(2 * math.pi * 200 * t).unsqueeze(0)
    b = 0.5 * torch.sin(2 * math.pi * 2000 * t).unsqueeze(0)
    m = mel(a)
    assert m.shape == (1, 80, 8960 // 256)
    assert int(m[0, :, 10].argmax()) < int(mel(b)[0, :, 10].argmax())  # higher tone, higher mel band
    assert float(L.mel_l1(mel, a, a)) == 0.0
    assert float(L.mel_l1(mel, a, b)) > 1.0


def test_receptive_field_bound_holds():
    gen = _tiny_generator().double()
    t = 90
    torch.manual_seed(1)
    with torch.no_grad():
        cond = gen.condition(torch.randint(0, 100, (1, t)), torch.full((1, t), 150.0, dtype=torch.float64),
                             torch.randn(1, 128, dtype=torch.float64), torch.randn(1, 128, dtype=torch.float64))
        y = gen.decode(cond)
        bumped = cond.clone()
        bumped[..., 45] += 1.0
        diff = (gen.decode(bumped) - y).abs()[0]
    reached = torch.nonzero(diff > 1e-12 * diff.max()).squeeze(1)
    rf = gen.receptive_field_frames()
    assert reached.numel() > 0
    assert int(reached.min()) >= (45 - rf) * 320 and int(reached.max()) < (46 + rf) * 320


def test_chunked_synthesis_equals_whole_utterance():
    from emotk.models.zest.vocoder.infer import retain_freed_memory, synthesize

    gen = _tiny_generator()
    rng = np.random.default_rng(0)
    t = 230
    tokens, f0 = rng.integers(0, 100, t), np.where(rng.random(t) > 0.3, 100 + 100 * rng.random(t), 0.0)
    s, e = rng.standard_normal(128), rng.standard_normal(128)
    whole = synthesize(gen, tokens, f0, s, e, chunk_frames=None)
    with torch.no_grad():
        direct = gen(torch.as_tensor(tokens), torch.as_tensor(f0, dtype=torch.float32),
                     torch.as_tensor(s, dtype=torch.float32), torch.as_tensor(e, dtype=torch.float32)).numpy()
    assert whole.shape == (t * 320,) and whole.dtype == np.float32
    np.testing.assert_allclose(whole, direct, atol=1e-7)
    scale = float(np.abs(whole).max())
    for chunk in (37, 100):
        chunked = synthesize(gen, tokens, f0, s, e, chunk_frames=chunk)
        assert float(np.abs(chunked - whole).max()) < 1e-4 * scale
    no_overlap = synthesize(gen, tokens, f0, s, e, chunk_frames=37, context_frames=0)
    assert float(np.abs(no_overlap - whole).max()) > 1e-3 * scale  # the overlap is what makes it exact
    if sys.platform.startswith("linux"):  # glibc: freed chunk memory is kept for reuse (no page faults)
        assert retain_freed_memory()


def test_chunks_are_balanced_and_cover_the_utterance():
    from emotk.models.zest.vocoder.infer import chunk_bounds

    assert chunk_bounds(250, 300) == [(0, 250)]  # 5 s at the 6 s default: one chunk, no overlap work
    assert chunk_bounds(500, 300) == [(0, 250), (250, 500)]  # 10 s: two equal halves, not 300 + 200
    for frames in (1, 7, 299, 300, 301, 599, 601, 1234):
        for chunk in (1, 13, 300):
            bounds = chunk_bounds(frames, chunk)
            sizes = [b - a for a, b in bounds]
            assert len(bounds) == -(-frames // chunk) and bounds[0][0] == 0 and bounds[-1][1] == frames
            assert all(a == prev for (a, _), (_, prev) in zip(bounds[1:], bounds[:-1]))
            assert max(sizes) <= chunk and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


# ---- training, export --------------------------------------------------------------------------------------------
def test_item_validation_names_the_bad_key():
    from emotk.models.zest.vocoder.data import check_item

    good = _items(1)[0]
    check_item(good, "item 0", 128, 128)
    with pytest.raises(DataError, match="item 0: 'wav' has 100 samples"):
        check_item({**good, "wav": np.zeros(100)}, "item 0", 128, 128)
    with pytest.raises(DataError, match="missing key 'f0'"):
        check_item({k: v for k, v in good.items() if k != "f0"}, "item 0", 128, 128)
    with pytest.raises(DataError, match="'speaker' has 64"):
        check_item({**good, "speaker": np.zeros(64)}, "item 0", 128, 128)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny vocoder trained briefly (mel-only warm-up, then GAN steps) on 3 short (0.8 s) utterances."""
    from emotk.models.zest.vocoder.task import train as train_vocoder

    items = _items(3)
    # 60 steps (~0.1 s each on one idle core): 50 mel-only warm-up steps, then 10 GAN steps.
    resolved = _tiny_cfg("train.max_steps=60", "warmup_generator_steps=50", "data.epoch_repeats=20",
                         "train.batch_size=3")
    threads = torch.get_num_threads()
    try:
        summary = train_vocoder(resolved, tmp_path_factory.mktemp("voc") / "run",
                                data={"train": items, "valid": items})
    finally:
        torch.set_num_threads(threads)
    return resolved, items, summary


def _mel_l1(gen, items) -> float:
    from emotk.models.zest.vocoder.config import LossConfig
    from emotk.models.zest.vocoder.losses import MelSpectrogram, mel_l1

    mel = MelSpectrogram(LossConfig())
    batch = {k: torch.stack([torch.as_tensor(np.asarray(it[k])) for it in items]) for k in items[0]}
    with torch.no_grad():
        fake = gen(batch["tokens"], batch["f0"].float(), batch["speaker"].float(), batch["emotion"].float())
        return float(mel_l1(mel, batch["wav"].float(), fake))


def test_training_lowers_the_mel_loss(trained):
    from emotk.models.zest.vocoder.export import load_generator
    from emotk.models.zest.vocoder.model import VocoderGAN

    resolved, items, summary = trained
    assert summary["stopped"] == "completed" and summary["steps"] == 60
    torch.manual_seed(resolved.config.train.seed)  # the trainer builds the model right after this seeding
    before = _mel_l1(VocoderGAN(resolved.config).generator.eval(), items)
    after = _mel_l1(load_generator(summary["export"]), items)
    assert after < 0.8 * before, (before, after)
    assert summary["best"]["mel_l1"] < before
    lines = (Path(summary["export"]).parent / "metrics.jsonl").read_text().splitlines()
    assert any('"adv/generator"' in line for line in lines)  # GAN steps ran after the warm-up


def test_export_round_trip_and_feature_mismatch(trained, tmp_path):
    from emotk.models.zest.vocoder.export import export_generator, load_generator
    from emotk.models.zest.vocoder.infer import synthesize

    _, items, summary = trained
    exact = load_generator(summary["export"], fold_weight_norm=False)
    again = tmp_path / "again"
    export_generator(exact, again)
    reloaded = load_generator(again, fold_weight_norm=False)
    folded = load_generator(again, expect_features={"num_tokens": 100, "hop": 320, "speaker_dim": 128})
    it = items[0]
    a = synthesize(exact, it["tokens"], it["f0"], it["speaker"], it["emotion"])
    b = synthesize(reloaded, it["tokens"], it["f0"], it["speaker"], it["emotion"])
    c = synthesize(folded, it["tokens"], it["f0"], it["speaker"], it["emotion"])
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, atol=1e-5)
    with pytest.raises(ConfigError, match=r"trained for num_tokens=100 .* gives num_tokens=50") as err:
        load_generator(again, expect_features={"num_tokens": 50})
    assert "\n" not in str(err.value)
    from emotk.models.zest.vocoder.config import GeneratorConfig
    from emotk.models.zest.vocoder.generator import VocoderGenerator

    other = tmp_path / "other"
    export_generator(VocoderGenerator(GeneratorConfig(token_dim=16, f0_dim=16, initial_channels=32,
                                                      resblock_kernels=[3], resblock_dilations=[[1]])), other)
    (other / "generator.json").write_text((again / "generator.json").read_text())
    with pytest.raises(DataError, match="weights do not fit generator.json"):
        load_generator(other)


def test_items_load_from_a_folder_of_npz(tmp_path):
    from emotk.models.zest.vocoder.data import SegmentDataset, load_items

    for i, item in enumerate(_items(2)):
        np.savez(tmp_path / f"u{i}.npz", **item)
    train, valid = load_items(tmp_path, 128, 128)
    assert len(train) == 2 and valid is None
    assert train[0]["wav"].shape == (40 * 320,) and train[0]["tokens"].dtype == torch.int64
    seg = SegmentDataset(train, 16, random=True, repeats=3)
    assert len(seg) == 6 and seg[5]["wav"].shape == (16 * 320,) and seg[5]["tokens"].shape == (16,)
    long = SegmentDataset(train, 50, random=False)[0]  # shorter than the crop: padded with silence
    assert long["wav"].shape == (50 * 320,) and float(long["wav"][40 * 320:].abs().max()) == 0.0
    np.savez(tmp_path / "u9.npz", tokens=np.zeros(3), f0=np.zeros(3))
    with pytest.raises(DataError, match=r"u9.npz: missing key 'speaker'"):
        load_items(tmp_path, 128, 128)
    with pytest.raises(DataError, match="expected a folder"):
        load_items(tmp_path / "missing", 128, 128)


def test_init_from_a_bigvgan_style_state_dict_copies_matching_tensors():
    from emotk.models.zest.vocoder.generator import load_bigvgan_state

    src, dst = _tiny_generator(seed=0), _tiny_generator(seed=1)
    old_names = {k.replace(".parametrizations.weight.original0", ".weight_g")
                 .replace(".parametrizations.weight.original1", ".weight_v"): v
                 for k, v in src.state_dict().items()}
    old_names["conv_pre.weight_v"] = torch.zeros(3, 3, 3)  # a shape that does not fit: skipped
    report = load_bigvgan_state(dst, old_names)
    assert "conv_pre.weight_v" in report["skipped"] and "ups.0.weight_g" in report["loaded"]
    assert torch.equal(dst.ups[0].parametrizations.weight.original0, src.ups[0].parametrizations.weight.original0)
    assert torch.equal(dst.token_embedding.weight, src.token_embedding.weight)
    assert not torch.equal(dst.conv_pre.parametrizations.weight.original1,
                           src.conv_pre.parametrizations.weight.original1)
    # NVIDIA's layout: ups.<i>.0.*, one flat resblocks list, activation_post
    nvidia = {"ups.1.0.weight_g": src.ups[1].parametrizations.weight.original0,
              "resblocks.3.convs1.0.weight_v": src.resblocks[1][1].convs1[0].parametrizations.weight.original1,
              "activation_post.act.alpha": src.act_post.act.alpha}
    fresh = _tiny_generator(seed=2)
    assert sorted(load_bigvgan_state(fresh, nvidia)["loaded"]) == sorted(nvidia)
    assert torch.equal(fresh.resblocks[1][1].convs1[0].parametrizations.weight.original1,
                       nvidia["resblocks.3.convs1.0.weight_v"])


def test_snakebeta_inference_path_equals_the_autograd_path():
    from emotk.models.zest.vocoder.activations import SnakeBeta

    act = SnakeBeta(3)
    with torch.no_grad():
        act.alpha.copy_(torch.tensor([0.1, -0.3, 0.5]))
        act.beta.copy_(torch.tensor([0.2, 0.0, -0.4]))
    x = torch.randn(2, 3, 50)
    with_grad = act(x)
    with torch.inference_mode():
        fast = act(x)
    assert torch.allclose(with_grad, fast, atol=1e-6)
