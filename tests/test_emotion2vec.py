"""emotk's emotion2vec (emotk.features.encoders.emotion2vec; checkpoints: emotk.hub.emotion2vec): shapes, checkpoint
layouts, masks, errors, the Emo-Sim embedder.

No real weights and no network: the tiny random variant and synthetic checkpoints written with the upstream key
names (FunASR ``model.pt`` + ``config.yaml``; fairseq ``{"cfg", "model", ...}`` with a pickled omegaconf-like
config). Numerical parity with FunASR's own class is checked by benchmarks/emotion2vec_parity.py (needs funasr).
"""

from __future__ import annotations

import enum
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emotk.errors import DataError, UsageError
from emotk.features.encoders.emotion2vec import (
    STANDARD_CONV_LAYERS,
    Emotion2vecConfig,
    alibi_slopes,
    build_emotion2vec,
    conv_spec_text,
    parse_conv_spec,
)
from emotk.hub.emotion2vec import AUDIO, load_emotion2vec, save_funasr, to_upstream_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny():
    from emotk.hub import build_tiny

    return build_tiny("tiny-emotion2vec").model


def _waves(lengths, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 0.1 for n in lengths]


def _pad(waves, value=0.0) -> torch.Tensor:
    longest = max(w.numel() for w in waves)
    return torch.stack([torch.cat([w, torch.full((longest - w.numel(),), value)]) for w in waves])


def _frames(model, wav: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(wav[None]).frames[0]


# ---- sizes, spec strings, slopes ----------------------------------------------------------------------------------
def test_tiny_forward_shapes_lengths_and_masks():
    model = _tiny()
    cfg = model.config
    assert (cfg.hop, cfg.receptive_field, cfg.num_frames(16000), cfg.num_frames(399)) == (320, 400, 49, 0)
    a, b = _waves([16000, 8000])
    with torch.no_grad():
        out = model(_pad([a, b]), [16000, 8000])
        emb = model.embed(_pad([a, b]), [16000, 8000])
    assert tuple(out.frames.shape) == (2, 49, 32) and out.lengths.tolist() == [49, 24]
    assert out.mask.sum(1).tolist() == [49, 24] and out.frames[1, 24:].abs().sum() == 0
    assert tuple(emb.shape) == (2, 32) and torch.isfinite(emb).all()
    with pytest.raises(UsageError, match="at least 400 samples"):
        model(torch.zeros(1, 399))
    with pytest.raises(UsageError, match="do not fit"):
        model(torch.zeros(2, 800), [800, 900])


def test_conv_spec_is_read_without_eval_and_written_back():
    standard = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"
    assert parse_conv_spec(standard) == STANDARD_CONV_LAYERS
    assert conv_spec_text(STANDARD_CONV_LAYERS) == "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
    assert parse_conv_spec(conv_spec_text(STANDARD_CONV_LAYERS)) == STANDARD_CONV_LAYERS
    for bad in ("__import__('os').system('true')", "[(512, 10)]", "[]", "[(512, 10, 5)] * -1 + 1", "[(1, 2, 'x')]"):
        with pytest.raises(DataError, match="feature_encoder_spec"):
            parse_conv_spec(bad, "cfg.yaml")


def test_alibi_slopes_follow_press_et_al():
    assert alibi_slopes(8) == pytest.approx([2.0 ** -i for i in range(1, 9)])
    # 12 heads (emotion2vec base): the 8-head series, then every other slope of the 16-head series 2^(-i/2)
    assert alibi_slopes(12) == pytest.approx([2.0 ** -i for i in range(1, 9)] + [2.0 ** -(i / 2) for i in (1, 3, 5, 7)])


# ---- masks: batch-of-N == N-of-1, padding is invisible --------------------------------------------------------------
VARIANT = dict(embed_dim=24, depth=2, prenet_depth=1, num_heads=3, mlp_ratio=2.0, layer_norm_first=True,
               conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2, extractor_mode="default",
               pos_conv_kernel=4, pos_conv_depth=2, pos_conv_groups=3, pos_conv_pre_norm=True, num_extra_tokens=0,
               num_alibi_heads=2, alibi_scale_per_layer=True, norm_eps=1e-6)


def _variant():
    """The other branches: group-norm extractor, pre-norm blocks with a final norm, pre-LN positional stack with an
    even kernel, ALiBi on 2 of 3 heads with per-layer scales, no extra tokens."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = build_emotion2vec(Emotion2vecConfig(**VARIANT))
        with torch.no_grad():
            model.alibi_scale.uniform_(0.3, 1.5)
    return model


@pytest.mark.parametrize("which", ["tiny", "variant"])
def test_batch_of_n_equals_n_batches_of_one(which):
    model = _tiny() if which == "tiny" else _variant()
    lengths = [16000, 9001, 4321, 12345]
    waves = _waves(lengths, seed=1)
    with torch.no_grad():
        out = model(_pad(waves), lengths)
        emb = model.embed(_pad(waves), lengths)
        singles = [model(w[None]) for w in waves]
    for i, single in enumerate(singles):
        n = int(out.lengths[i])
        assert n == single.frames.shape[1] == model.config.num_frames(lengths[i])
        assert torch.allclose(out.frames[i, :n], single.frames[0], atol=1e-4)
        assert torch.allclose(emb[i], single.frames[0].mean(0), atol=1e-4)


def test_padding_content_does_not_change_the_utterance_embedding():
    model = _tiny()
    (wav,) = _waves([11111], seed=2)
    garbage = torch.randn(5000) * 3.0
    with torch.no_grad():
        clean = model.embed(wav[None])
        padded = model.embed(torch.cat([wav, garbage])[None], [wav.numel()])
        longer = model.embed(torch.cat([wav, garbage])[None])
    assert torch.allclose(clean, padded, atol=1e-5)
    assert not torch.allclose(clean, longer, atol=1e-3)  # the same samples counted as audio do change it


def test_waveform_normalization_follows_the_config():
    model = _tiny()
    (wav,) = _waves([8000], seed=4)
    raw = build_emotion2vec(Emotion2vecConfig.from_dict({**model.config.to_dict(), "normalize": False}))
    raw.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(model.embed(wav[None]), model.embed(5.0 * wav[None] + 0.2), atol=1e-4)
        assert not torch.allclose(raw.embed(wav[None]), raw.embed(5.0 * wav[None] + 0.2), atol=1e-2)


# ---- checkpoint layouts ---------------------------------------------------------------------------------------------
UPSTREAM_KEYS = [  # a sample of the real key names (FunASR Emotion2vec / fairseq data2vec_multi)
    f"{AUDIO}local_encoder.conv_layers.0.0.weight", f"{AUDIO}local_encoder.conv_layers.6.2.1.bias",
    f"{AUDIO}project_features.1.weight", f"{AUDIO}project_features.2.bias",
    f"{AUDIO}relative_positional_encoder.1.0.weight", f"{AUDIO}relative_positional_encoder.2.0.bias",
    f"{AUDIO}extra_tokens", f"{AUDIO}alibi_scale", f"{AUDIO}context_encoder.norm.weight",
    f"{AUDIO}context_encoder.blocks.0.attn.qkv.weight", f"{AUDIO}context_encoder.blocks.0.mlp.fc1.weight",
    "blocks.0.norm1.weight", "blocks.1.attn.proj.bias", "blocks.1.mlp.fc2.weight", "blocks.1.norm2.bias",
]
TRAINING_ONLY = {f"{AUDIO}decoder.blocks.0.0.weight": torch.ones(4, 2, 3), f"{AUDIO}decoder.proj.weight": torch.ones(3),
                 "proj.weight": torch.ones(9, 32), "proj.bias": torch.ones(9)}


def _same_outputs(a, b) -> bool:
    waves = _waves([16000, 7000], seed=5)
    with torch.no_grad():
        return torch.equal(a(_pad(waves), [16000, 7000]).frames, b(_pad(waves), [16000, 7000]).frames)


def test_funasr_layout_round_trip_with_real_key_names(hub_env, tmp_path):
    from emotk.hub import load, save_tiny

    model = _tiny()
    folder = save_tiny("tiny-emotion2vec", tmp_path / "plus")
    state = torch.load(folder / "model.pt", weights_only=True)
    assert set(UPSTREAM_KEYS) <= set(state)
    conf = yaml.safe_load((folder / "config.yaml").read_text())
    assert conf["model"] == "Emotion2vec" and conf["model_conf"]["modalities"]["audio"]["num_extra_tokens"] == 2
    loaded = load("tiny-emotion2vec", path=folder)
    assert loaded.family == "emotion2vec" and loaded.model.checkpoint_layout == "funasr"
    assert loaded.model.config == model.config and _same_outputs(loaded.model, model)
    # FunASR's trained checkpoints carry training-only weights and may nest the state dict: both are accepted
    torch.save({"state_dict": {**state, **TRAINING_ONLY}}, folder / "model.pt")
    assert _same_outputs(load_emotion2vec(folder), model)


# Stand-ins for the classes a fairseq checkpoint pickles, defined under the real names so that torch.save writes
# the same GLOBALs (omegaconf's containers keep _metadata, _parent and _content / _val, as the real ones do).
class _Meta:
    __module__, __qualname__ = "omegaconf.base", "ContainerMetadata"

    def __init__(self, key=None):
        self.ref_type, self.object_type, self.key, self.flags = None, dict, key, {}


class _AnyNode:
    __module__, __qualname__ = "omegaconf.nodes", "AnyNode"

    def __init__(self, value, parent, key):
        self._metadata, self._parent, self._val = _Meta(key), parent, value


class _DictConfig:
    __module__, __qualname__ = "omegaconf.dictconfig", "DictConfig"

    def __init__(self, content: dict, parent=None):
        self._metadata, self._parent = _Meta(), parent
        self._content = {k: _node(v, self, k) for k, v in content.items()}


class _ListConfig:
    __module__, __qualname__ = "omegaconf.listconfig", "ListConfig"

    def __init__(self, items: list, parent=None):
        self._metadata, self._parent = _Meta(), parent
        self._content = [_node(v, self, i) for i, v in enumerate(items)]


def _node(value, parent, key):
    if isinstance(value, dict):
        return _DictConfig(value, parent)
    if isinstance(value, list):
        return _ListConfig(value, parent)
    return _AnyNode(value, parent, key)


class _AverageMeter:
    __module__, __qualname__ = "fairseq.logging.meters", "AverageMeter"

    def __init__(self):
        self.val, self.sum, self.count = 1.5, 3.0, 2


_Modality = enum.Enum("Modality", {"AUDIO": 1}, module="examples.data2vec.data.modality", qualname="Modality")
_CALLS: list = []


def _detonate(arg):
    """A payload: unsafe unpickling calls it (through _Bomb.__reduce__); a safe load must not."""
    _CALLS.append(arg)
    return arg


_detonate.__module__, _detonate.__qualname__ = "evil.payload", "detonate"


class _Bomb:
    def __reduce__(self):
        return _detonate, ("boom",)


_FAKE_MODULES = {"omegaconf.dictconfig": [_DictConfig], "omegaconf.listconfig": [_ListConfig],
                 "omegaconf.nodes": [_AnyNode], "omegaconf.base": [_Meta], "fairseq.logging.meters": [_AverageMeter],
                 "examples.data2vec.data.modality": [_Modality], "evil.payload": [_detonate]}


@pytest.fixture
def upstream_names(monkeypatch):
    """Fake modules holding the stand-ins, so that pickling finds them under their upstream names."""
    for module, members in _FAKE_MODULES.items():
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if not getattr(sys.modules.get(name), "__emotk_fake__", False):
                fake = types.ModuleType(name)
                fake.__emotk_fake__ = True
                monkeypatch.setitem(sys.modules, name, fake)
        for obj in members:
            setattr(sys.modules[module], obj.__qualname__, obj)


def _fairseq_checkpoint(path: Path, model, normalize: bool = True, extra: dict | None = None) -> Path:
    """Write ``model`` as fairseq's trainer does: cfg as omegaconf objects with an unresolved ``${...}``
    interpolation and an enum, training-only weights (EMA, decoder), optimizer history and meters."""
    conf = model.config.to_funasr_conf()
    conf["_name"] = "data2vec_multi"
    conf["normalize"] = not normalize  # fairseq reads task.normalize; a wrong model-level value must not win
    conf["modalities"]["audio"]["num_alibi_heads"] = "${model.num_heads}"
    conf["modalities"]["audio"]["type"] = _Modality.AUDIO
    cfg = _DictConfig({"_name": None, "common": {"seed": 1}, "model": conf,
                       "task": {"_name": "audio_pretraining", "normalize": normalize, "labels": ["a", "b"]}})
    weights = {**to_upstream_state_dict(model), **TRAINING_ONLY, "_ema": {"blocks.0.norm1.weight": torch.ones(32)}}
    torch.save({"args": None, "cfg": cfg, "model": weights,
                "optimizer_history": [{"criterion_name": "ModelCriterion", "num_updates": 10}],
                "extra_state": {"metrics": {"train": {"loss": _AverageMeter()}}}, **(extra or {})}, path)
    return path


def test_fairseq_layout_with_pickled_config_objects(tmp_path, upstream_names):
    model = _tiny()
    path = _fairseq_checkpoint(tmp_path / "emotion2vec_base.pt", model)
    with pytest.raises(Exception, match="Unsupported global"):  # what plain weights_only loading says
        torch.load(path, weights_only=True)
    loaded = load_emotion2vec(path)
    assert loaded.checkpoint_layout == "fairseq" and loaded.config == model.config
    assert _same_outputs(loaded, model)
    # normalize comes from cfg.task, as in emotion2vec's extract_features script
    raw = _fairseq_checkpoint(tmp_path / "raw.pt", model, normalize=False)
    assert load_emotion2vec(raw).config.normalize is False


def test_foreign_globals_are_never_imported_or_called(tmp_path, upstream_names):
    model = _tiny()
    path = _fairseq_checkpoint(tmp_path / "bomb.pt", model, extra={"bomb": _Bomb()})
    _CALLS.clear()
    torch.load(path, weights_only=False)  # the sanity check: unsafe loading does run the payload
    assert _CALLS == ["boom"]
    _CALLS.clear()
    assert _same_outputs(load_emotion2vec(path), model) and _CALLS == []


def test_bare_state_dict_infers_the_config(tmp_path):
    model = _tiny()
    torch.save(to_upstream_state_dict(model), tmp_path / "e2v.pt")
    loaded = load_emotion2vec(tmp_path / "e2v.pt")
    assert loaded.checkpoint_layout == "state-dict" and loaded.config == model.config
    assert _same_outputs(loaded, model)


def _one_line_data_error(path, *needles):
    with pytest.raises(DataError) as e:
        load_emotion2vec(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_bad_checkpoints_are_one_line_data_errors_naming_the_file(tmp_path):
    model = _tiny()
    folder = save_funasr(model, tmp_path / "plus")
    weights = folder / "model.pt"
    state = torch.load(weights, weights_only=True)
    missing = dict(state)
    del missing["blocks.1.mlp.fc2.weight"]
    torch.save(missing, weights)
    _one_line_data_error(folder, str(weights), "missing weight blocks.1.mlp.fc2.weight")
    torch.save({**state, "blocks.1.mlp.fc2.weight": torch.zeros(32, 7)}, weights)
    _one_line_data_error(folder, str(weights), "blocks.1.mlp.fc2.weight", "(32, 7)", "(32, 64)")
    torch.save({**state, "blocks.0.attn.logit_scale": torch.zeros(2, 1, 1)}, weights)
    _one_line_data_error(folder, str(weights), "blocks.0.attn.logit_scale", "does not fit")
    torch.save({k: v for k, v in state.items() if not k.startswith("blocks.1.")}, weights)  # config: depth 2
    _one_line_data_error(folder, "config.yaml", "depth=2", "depth=1")
    weights.write_bytes(b"not a checkpoint")
    _one_line_data_error(folder, str(weights), "not a torch checkpoint")
    torch.save({"weights": [1, 2, 3]}, weights)
    _one_line_data_error(folder, str(weights), "no state dict")
    torch.save({"a.weight": torch.ones(2)}, weights)
    _one_line_data_error(folder, str(weights), "not an emotion2vec")
    _one_line_data_error(tmp_path / "nowhere", "nowhere", "not found")
    torch.save(state, weights)
    (folder / "config.yaml").write_text("model: Emotion2vec\nmodel_conf:\n  modalities:\n    audio:\n"
                                        "      learned_alibi: true\n")
    _one_line_data_error(folder, "config.yaml", "learned ALiBi")


# ---- the Emo-Sim embedder and the `auto` rule of `emotk evaluate est` -----------------------------------------------
def test_emotion2vec_embedder_from_path_and_name(hub_env, tmp_path):
    from emotk.core.io import sha256_file
    from emotk.eval import measures as M
    from emotk.hub import save_tiny

    folder = save_tiny("tiny-emotion2vec", tmp_path / "e2v")
    by_path = M.make_emotion_embedder(f"emotion2vec:{folder}")
    assert isinstance(by_path, M.Emotion2vecEmbedder)
    assert by_path.name == f"emotion2vec:{folder}:{sha256_file(folder / 'model.pt')[:12]}"
    by_name = M.make_emotion_embedder("emotion2vec:tiny-emotion2vec", batch_size=2)
    assert by_name.name.startswith("emotion2vec:tiny-emotion2vec:") and by_name.batch_size == 2
    waves = [w.numpy() for w in _waves([16000, 6000, 12000, 400, 9000], seed=6)]
    a, b = by_path.embed(waves[0]), by_path.embed(waves[1])
    assert a.shape == (32,) and a.dtype == np.float32
    assert by_path.similarity(waves[0], waves[0].copy()) == pytest.approx(1.0, abs=1e-6)
    assert M.cosine(a, b) < 0.999
    batch = by_name.embed_batch(waves)  # 3 batches of <= 2, longest first, back in input order
    assert np.allclose(batch, np.stack([by_path.embed(w) for w in waves]), atol=1e-4)
    with torch.no_grad():
        assert np.allclose(a, _tiny().embed(torch.from_numpy(waves[0])[None])[0].numpy(), atol=1e-5)
    with pytest.raises(Exception, match="shorter than the minimum of 400"):
        by_path.embed(waves[0][:399])
    with pytest.raises(UsageError, match="takes no option 'layer'"):
        M.make_emotion_embedder("emotion2vec:tiny-emotion2vec", layer=3)


def test_auto_uses_emotion2vec_when_a_local_copy_resolves(hub_env, tmp_path):
    from emotk.eval import measures as M
    from emotk.eval.est import EstMeasures, choose_emotion
    from emotk.hub import models_dir, save_tiny

    bundles = {"s2s-zest": Path("/runs/bundle")}
    auto = EstMeasures()
    assert choose_emotion(auto, bundles) == "zest:/runs/bundle"  # nothing local: the bundle's emotion encoder
    with pytest.raises(UsageError, match="no local copy of emotion2vec-plus-base or emotion2vec-base"):
        choose_emotion(auto, {})
    assert choose_emotion(EstMeasures(emotion="upstream:tiny-wavlm"), bundles) == "upstream:tiny-wavlm"
    # emotion2vec base (fairseq layout: one file) in $EMOTK_MODELS
    (models_dir() / "emotion2vec-base").mkdir(parents=True)
    torch.save({"cfg": {"model": _tiny().config.to_funasr_conf(), "task": {"normalize": True}},
                "model": to_upstream_state_dict(_tiny())}, models_dir() / "emotion2vec-base" / "emotion2vec_base.pt")
    assert choose_emotion(auto, bundles) == "emotion2vec:emotion2vec-base"
    # emotion2vec+ base (FunASR folder) wins over base
    save_tiny("tiny-emotion2vec", models_dir() / "emotion2vec-plus-base")
    assert choose_emotion(auto, {}) == "emotion2vec:emotion2vec-plus-base"
    emb = M.make_emotion_embedder("emotion2vec")
    assert emb.name.startswith("emotion2vec:emotion2vec-plus-base:")
    assert np.allclose(emb.embed(_waves([8000])[0].numpy()), M.make_emotion_embedder("emotion2vec-base").embed(
        _waves([8000])[0].numpy()), atol=1e-6)


def test_inert_loading_bounds_what_a_crafted_checkpoint_can_make_it_do():
    from emotk.errors import DataError
    from emotk.hub import inert_load

    shared = [1]
    for _ in range(40):  # 2**40 paths through 41 objects: a naive walk never ends
        shared = [shared, shared]
    with pytest.raises(DataError, match="more than"):
        inert_load.plain(shared)
    bytes_, int_ = inert_load._stand_in("builtins.bytes"), inert_load._stand_in("builtins.int")
    assert bytes_(b"ab") == b"ab" and int_("12") == 12 and int_(3.0) == 3  # ordinary data still builds
    with pytest.raises(ValueError):
        bytes_(10**12)
    with pytest.raises(ValueError):
        int_("9" * (2**20 + 1))
    assert inert_load.plain({"a": (1, [2.5, "x"])}) == {"a": [1, [2.5, "x"]]}
