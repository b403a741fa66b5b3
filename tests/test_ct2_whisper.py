"""CTranslate2 Whisper files as all-layer PyTorch upstreams: emotk's reader, the encoder, the cache, the hub names.

A tiny random transformers Whisper is converted by ctranslate2's own converter (float32, float16, bfloat16, int8,
int16); the rebuilt encoder is checked against the transformers model (all layers) and against
ctranslate2's encoder (30-s window). Tolerances (measured max |diff| in brackets; hidden values up to ~3 for the
tiny model, ~10 for tiny.en): float32 weights vs transformers 1e-5 [0], float16 5e-3 [1.6e-3], bfloat16 2e-2
[7.6e-3], int8 1e-2 [1.6e-3], int16 1e-3 [2.6e-4] (weights dequantized to float32); the 30-s window vs
ctranslate2's encoder 1e-4 [4.8e-7 tiny; 3.0e-5 tiny.en vs faster-whisper at float32 compute]; native batches vs
one at a time 1e-5 [4.8e-7] (tiny) and 1e-3 [1.2e-4, tiny.en's last layer, after the final LayerNorm]; the
front end vs transformers' WhisperFeatureExtractor 1e-5 [0].
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from emotk.errors import DataError, UsageError
from emotk.features.upstream import Upstream
from tests.conftest import needs_ct2

ctranslate2 = pytest.importorskip("ctranslate2")
SR = 16000

# quantization -> (atol vs transformers, stored dtype of the encoder's linear weights)
QUANTIZATIONS = {"float32": (1e-5, "float32"), "float16": (5e-3, "float16"), "bfloat16": (2e-2, "bfloat16"),
                 "int8": (1e-2, "int8"), "int16": (1e-3, "int16")}


def _wavs(seconds, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(round(s * SR)))).astype(np.float32) for s in seconds]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random transformers Whisper (2 blocks, 32-d, the real 1500-position window) saved with a tokenizer,
    and its CTranslate2 conversions: {"hf": model, "dir": hf folder, <quantization>: ct2 folder}."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from emotk.hub.tiny import tiny_tokenizer

    root = tmp_path_factory.mktemp("tiny-whisper")
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_target_positions=32, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=0)
    model = WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # non-trivial layer norms and biases, so that a weight in the wrong place shows
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    hf_dir = root / "hf"
    model.save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    out = {"hf": model, "dir": hf_dir}
    for q in QUANTIZATIONS:
        out[q] = root / f"ct2-{q}"
        ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(out[q]), quantization=q)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh emotk cache folder ($EMOTK_CACHE)."""
    monkeypatch.setenv("EMOTK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _hf_hidden(model, mel: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model.model.encoder(mel, output_hidden_states=True).hidden_states)


# ---------------------------------------------------------------------------------------------------------- reader


@pytest.mark.parametrize("quantization", list(QUANTIZATIONS))
def test_reader_loads_every_variable(tiny, quantization):
    from emotk.hub.ct2 import read_ct2_model

    # what ctranslate2 serialised: its own spec of the same model (a test-only use of the converter's internals)
    spec = ctranslate2.converters.TransformersConverter(str(tiny["dir"]))._load()
    spec.validate()
    spec.optimize(quantization=quantization)
    expected = dict(spec.variables(ordered=True))
    ct2 = read_ct2_model(tiny[quantization])
    assert (ct2.version, ct2.spec, ct2.revision) == (6, "WhisperSpec", 3)
    assert set(ct2.variables) | set(ct2.aliases) == set(expected)
    for alias, target in ct2.aliases.items():
        assert expected[alias] == target
    for name, arr in ct2.variables.items():
        assert tuple(arr.shape) == tuple(expected[name].shape), name
        assert ct2.dtypes[name] == expected[name].dtype, name
    assert ct2.dtype("encoder/layer_0/ffn/linear_0/weight") == QUANTIZATIONS[quantization][1]
    assert "alignment_heads" in ct2.config  # config.json comes along
    # float32: the stored encoder weights are transformers' own, bit for bit
    if quantization == "float32":
        enc = tiny["hf"].model.encoder
        np.testing.assert_array_equal(ct2.float32("encoder/conv1/weight"), enc.conv1.weight.detach().numpy())
        attn = enc.layers[1].self_attn
        qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach().numpy()
        np.testing.assert_array_equal(ct2.float32("encoder/layer_1/self_attention/linear_0/weight"), qkv)
    # int8: dequantized weights within half a quantization step of the originals
    if quantization == "int8":
        w = tiny["hf"].model.encoder.layers[0].fc1.weight.detach().numpy()
        scale = ct2.float32("encoder/layer_0/ffn/linear_0/weight_scale")
        err = np.abs(ct2.float32("encoder/layer_0/ffn/linear_0/weight") - w)
        assert (err <= 0.5 / scale[:, None] + 1e-7).all()


def test_reader_select_skips_variables(tiny):
    from emotk.hub.ct2 import read_ct2_model

    ct2 = read_ct2_model(tiny["float32"] / "model.bin", select=lambda n: n.startswith("encoder/"))
    assert ct2.variables and all(n.startswith("encoder/") for n in ct2.variables)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "version"])
def test_corrupt_model_bin_is_one_line_data_error(tiny, tmp_path, damage, cache):
    from emotk.hub.ct2_whisper import load_ct2_whisper_encoder

    bad = tmp_path / "bad"
    shutil.copytree(tiny["float32"], bad)
    data = (bad / "model.bin").read_bytes()
    new = {"truncated": data[: len(data) // 2], "garbage": b"\x06\x00\x00\x00" + bytes(range(256)) * 4,
           "empty": b"", "version": (99).to_bytes(4, "little") + data[4:]}[damage]
    (bad / "model.bin").write_bytes(new)
    with pytest.raises(DataError) as err:
        load_ct2_whisper_encoder(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad / "model.bin") in msg
    assert not list(cache.rglob("*.safetensors"))  # nothing half-converted left behind


def test_unsupported_dtype_names_variable(tiny, tmp_path):
    from emotk.hub.ct2 import read_ct2_model

    ct2 = read_ct2_model(tiny["float32"])
    ct2.dtypes["encoder/conv1/weight"] = "int32"
    with pytest.raises(DataError, match="encoder/conv1/weight.*int32"):
        ct2.float32("encoder/conv1/weight")


# ---------------------------------------------------------------------------------------------------------- encoder


def test_front_end_matches_transformers():
    from transformers import WhisperFeatureExtractor

    from emotk.features.encoders.whisper import WhisperLogMel, whisper_mel_filters

    fe = WhisperFeatureExtractor(feature_size=80)
    np.testing.assert_allclose(whisper_mel_filters(80), fe.mel_filters.T, atol=1e-6)
    w = _wavs((1.37,))[0]
    ref = fe(w, sampling_rate=SR, return_tensors="np").input_features[0]
    ours = WhisperLogMel(80)(torch.from_numpy(w), frames=3000).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    # native length: the first ceil(S / 160) frames of the 30-s window, exactly
    native = WhisperLogMel(80)(torch.from_numpy(w))
    assert native.shape == (80, math.ceil(len(w) / 160))
    torch.testing.assert_close(native, torch.from_numpy(ours[:, : native.shape[1]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("quantization", list(QUANTIZATIONS))
def test_encoder_matches_transformers_all_layers(tiny, quantization, cache):
    from emotk.hub.ct2_whisper import load_ct2_whisper_encoder

    encoder = load_ct2_whisper_encoder(tiny[quantization])
    assert encoder.config.num_layers == 2 and encoder.config.d_model == 32 and encoder.config.num_heads == 2
    mel = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 80, 3000)).astype(np.float32))
    with torch.no_grad():
        ours, frames = encoder.hidden_states(mel)
    ref = _hf_hidden(tiny["hf"], mel)
    assert len(ours) == len(ref) == 3 and frames.tolist() == [1500, 1500]
    atol = QUANTIZATIONS[quantization][0]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_full_window_matches_ctranslate2_encoder(tiny, cache):
    from transformers import WhisperFeatureExtractor

    up = Upstream.from_hub("whisper-ct2:" + str(tiny["float32"]), window="full")
    assert (up.backend, up.window, up.num_layers, up.dim) == ("emotk", "full", 3, 32)
    w = _wavs((1.37,))[0]
    out = up([w])
    assert out.lengths.tolist() == [69]
    mel = WhisperFeatureExtractor(feature_size=80)(w, sampling_rate=SR, return_tensors="np").input_features
    ref = np.asarray(ctranslate2.models.Whisper(str(tiny["float32"]), device="cpu").encode(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32)), to_cpu=True))
    np.testing.assert_allclose(out.hidden[0, -1, :69].numpy(), ref[0, :69], atol=1e-4)


def test_native_batches_equal_single_items_and_padding_is_zero(tiny, cache):
    up = Upstream.from_hub("whisper-ct2:" + str(tiny["float32"]))
    assert up.window == "native" and up.padded_input_samples(12345) == 12345
    wavs = _wavs((1.0, 1.37, 0.33, 2.0))
    out = up(wavs)
    assert out.lengths.tolist() == [math.ceil(len(w) / 320) for w in wavs] == [50, 69, 17, 100]
    for b, w in enumerate(wavs):
        single = up([w])
        n = int(out.lengths[b])
        torch.testing.assert_close(out.hidden[b, :, :n], single.hidden[0], atol=1e-5, rtol=0)
        assert float(out.hidden[b, :, n:].abs().sum()) == 0.0
    # native vs the 30-s window: same frame count, different values (Whisper's attention sees the window's
    # padding); the difference is reported, not bounded
    full = Upstream.from_model(up.encoder, window="full")(wavs[1:2])
    assert full.lengths.tolist() == [69]
    diff = float((full.hidden[0, -1] - out.hidden[1, -1, :69]).abs().max())
    print(f"native vs 30-s padded, last layer, tiny random: max |diff| {diff:.3g}")
    assert math.isfinite(diff)


def test_native_long_input_is_cut_into_windows(tiny, cache):
    up = Upstream.from_hub("whisper-ct2:" + str(tiny["float32"]))
    w = _wavs((31.3,))[0]
    out = up([w])
    assert out.lengths.tolist() == [math.ceil(len(w) / 320)]
    parts = [up([w[: 30 * SR]]).hidden[0], up([w[30 * SR:]]).hidden[0]]
    torch.testing.assert_close(out.hidden[0], torch.cat(parts, dim=1), atol=1e-5, rtol=0)


def test_window_option_is_checked(tiny):
    with pytest.raises(UsageError, match="window='native' needs emotk's Whisper encoder"):
        Upstream.from_model(tiny["hf"], window="native")
    with pytest.raises(UsageError, match="choose one of full, native"):
        Upstream.from_model(tiny["hf"], window="30s")
    assert Upstream.from_model(tiny["hf"]).window == "full"


def test_encoder_is_trainable(tiny, cache):
    up = Upstream.from_hub("whisper-ct2:" + str(tiny["float32"]), trainable=True)
    up.train()
    out = up(_wavs((0.5, 0.8)))
    out.hidden[:, -1].sum().backward()
    assert up.encoder.conv1.weight.grad is not None and float(up.encoder.conv1.weight.grad.abs().sum()) > 0


# ---------------------------------------------------------------------------------------------------------- cache


def test_cache_reused_and_invalidated_when_model_bin_changes(tiny, tmp_path, cache, monkeypatch):
    import emotk.hub.ct2_whisper as cw
    from emotk.core.io import sha256_file

    model_dir = tmp_path / "model"
    shutil.copytree(tiny["float32"], model_dir)
    calls = []
    real_reader = cw.read_ct2_model

    def counting_reader(*args, **kwargs):
        calls.append(args[0])
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(cw, "read_ct2_model", counting_reader)
    first = cw.load_ct2_whisper_encoder(model_dir)
    files = list((cache / cw.CACHE_SUBDIR).glob("*.safetensors"))
    assert len(calls) == 1 and len(files) == 1
    assert files[0].stem == sha256_file(model_dir / "model.bin")
    second = cw.load_ct2_whisper_encoder(model_dir)
    assert len(calls) == 1  # the second load never parsed model.bin
    for (k, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), k
    # a different model.bin in the same place (here: the int8 conversion) is converted again
    shutil.copy(tiny["int8"] / "model.bin", model_dir / "model.bin")
    third = cw.load_ct2_whisper_encoder(model_dir)
    assert len(calls) == 2 and len(list((cache / cw.CACHE_SUBDIR).glob("*.safetensors"))) == 2
    assert not torch.equal(third.layers[0].fc1.weight, first.layers[0].fc1.weight)
    assert not list((cache / cw.CACHE_SUBDIR).glob(".*"))  # no temporary files left


# ---------------------------------------------------------------------------------------------------------- hub


def test_whisper_size_name_loads_a_ct2_directory(tiny, hub_env, cache):
    from emotk.hub import load, resolve

    assert resolve("whisper-base", path=tiny["float32"]) == tiny["float32"]
    loaded = load("whisper-base", path=tiny["float32"])
    assert type(loaded.model).__name__ == "WhisperEncoder" and loaded.format == "ct2"
    up = Upstream.from_hub("whisper-base", path=tiny["float32"])
    assert (up.num_layers, up.window) == (3, "native")
    with pytest.raises(UsageError, match="whisper-ct2:DIR"):
        Upstream.from_hub("whisper-ct2:")


@needs_ct2
def test_bundled_whisper_tiny_en_all_layers_and_ct2_parity(hub_env, cache):
    import faster_whisper

    from emotk.hub import locate
    from emotk.hub.registry import get_spec
    from emotk.hub.resolve import package_dir

    bundled = package_dir(get_spec("whisper-tiny.en-ct2"))
    found = locate("whisper-tiny.en")
    assert found is not None and (found.source, found.path) == ("package", bundled)
    up = Upstream.from_hub("whisper-tiny.en")
    assert (up.backend, up.window, up.num_layers, up.dim, up.frame_rate) == ("emotk", "native", 5, 384, 50.0)
    assert up.layer_names == ("input", "layer_1", "layer_2", "layer_3", "layer_4")
    wavs = _wavs((1.37, 0.6, 2.2))
    out = up(wavs)
    assert out.lengths.tolist() == [69, 30, 110]
    for b, w in enumerate(wavs):
        n = int(out.lengths[b])
        torch.testing.assert_close(out.hidden[b, :, :n], up([w]).hidden[0], atol=1e-3, rtol=0)
    # the 30-s window: the last layer is faster-whisper's encoder output (float32 compute on the same weights)
    full = Upstream.from_model(up.encoder, window="full")
    w = wavs[0]
    model = faster_whisper.WhisperModel(str(bundled), device="cpu", compute_type="float32", cpu_threads=1)
    mel = model.feature_extractor(np.pad(w, (0, 30 * SR - len(w))), padding=0)[None, :, :3000]
    ref = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)), to_cpu=True))
    np.testing.assert_allclose(full([w]).hidden[0, -1, :69].numpy(), ref[0, :69], atol=1e-4)
