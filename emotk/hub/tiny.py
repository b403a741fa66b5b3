"""Tiny random-weight variants of every model family, for tests and the demo.

Each ``tiny-<family>`` model is the real class (transformers ``WavLMModel``, speechbrain ECAPA-TDNN, emotk's
``SoftHubert`` and ``Emotion2vec``, ...) with a small config, initialised from a seed derived from its name, so
the same name always gives identical weights and the global torch RNG is left untouched. Building takes a few ms
and a forward pass on 1 s of audio well under 0.3 s on a CPU. :func:`save_tiny` writes the model in its real
on-disk format (HF directory, speechbrain ``hyperparams.yaml`` + checkpoints, soft-HuBERT ``.pt``, FunASR
``model.pt`` + ``config.yaml``) so the directory-loading code paths are exercised too.

The tiny tokenizer (RoBERTa/LLaMA variants) is a WordPiece vocabulary built by the ``tokenizers`` library
from a fixed word list plus single characters and ``##``-continuations, so any lower-case ASCII text
tokenizes without an unknown token; it needs no training and no network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import OutputExistsError, UsageError
from emotk.hub.registry import get_spec, list_specs
from emotk.hub.types import LoadedModel

# --------------------------------------------------------------------------------------------- configs

_AUDIO_SSL = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=32, layerdrop=0.0,
)
HF_CONFIGS: dict[str, tuple[str, str, dict]] = {  # name -> (config class, model class, config kwargs)
    "tiny-wavlm": ("WavLMConfig", "WavLMModel", {**_AUDIO_SSL, "num_buckets": 32, "max_bucket_distance": 80}),
    "tiny-hubert": ("HubertConfig", "HubertModel", dict(_AUDIO_SSL)),
    "tiny-wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", dict(_AUDIO_SSL)),
    "tiny-data2vec": ("Data2VecAudioConfig", "Data2VecAudioModel",
                      {**_AUDIO_SSL, "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5}),
    "tiny-whisper": ("WhisperConfig", "WhisperModel", dict(
        vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=50, max_target_positions=32, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=0, begin_suppress_tokens=None, suppress_tokens=None)),
    "tiny-roberta": ("RobertaConfig", "RobertaModel", dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "tiny-llama": ("LlamaConfig", "LlamaForCausalLM", dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2, tie_word_embeddings=False)),
}
# Whisper's encoder needs exactly 2 * max_source_positions mel frames: 1 s chunks for the tiny variant.
TINY_WHISPER_CHUNK_S = 1

SOFT_HUBERT_TINY = dict(conv_dim=32, hidden_size=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
                        pos_conv_groups=4, unit_dim=16, num_label_embeddings=8)

# 7 convs with the standard kernels/strides (20 ms hop), 2 extra tokens, per-head ALiBi scales, as emotion2vec+.
EMOTION2VEC_TINY = dict(embed_dim=32, depth=2, prenet_depth=1, num_heads=2, mlp_ratio=2.0,
                        conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2, pos_conv_kernel=5,
                        pos_conv_depth=2, pos_conv_groups=4, num_extra_tokens=2, num_alibi_heads=2)

ECAPA_TINY = dict(
    n_mels=24,
    channels=[32, 32, 32, 32, 96], kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
    attention_channels=8, res2net_scale=4, se_channels=8, lin_neurons=16,
    speakers=["spk0", "spk1", "spk2", "spk3"],
)

_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4 (pad = 1)
_WORDS = """
a about after again all also am an and angry are as at away back bad be because been before being better
but by calm can come could day did disgust do does done down each even ever every excited face fear feel
felt few find fine for from fun get give go going good great had happy has hate have he hear her here him
his home how i if in is it just keep kind know last leave let life like little long look love made make
man many may me mean more most much must my need never new nice night no not now of off oh ok okay old on
one only or other our out over people please really right said same sad say see she should so some sorry
still stop such sure surprise take talk tell than thank that the their them then there these they thing
think this time to today told too two up us very want was way we well were what when where which who why
will with without work would yeah yes yet you your
""".split()
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789")
_PUNCT = list(".,!?'\"-:;()")


def seed_for(name: str) -> int:
    """Return the seed of a tiny model: the first 8 hex digits of sha256(name), as an int."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16)


@contextlib.contextmanager
def _seeded(name: str) -> Iterator[None]:
    """Seed torch from ``name`` inside the block and restore the caller's RNG state afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(name))
        yield


def tiny_tokenizer(bos_only: bool = False):
    """Return a deterministic WordPiece ``PreTrainedTokenizerFast`` (RoBERTa special tokens, ids 0..4).

    ``bos_only`` adds only ``<s>`` in front (LLaMA style) instead of ``<s> ... </s>`` (RoBERTa style).
    Vocabulary: specials, punctuation, characters, ``##`` + characters, then the fixed word list.
    """
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in _SPECIALS + _PUNCT + _CHARS + ["##" + c for c in _CHARS] + _WORDS:
        vocab.setdefault(tok, len(vocab))
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token="<unk>", max_input_chars_per_word=64))
    core.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=True,
                                                 lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bos, eos = ("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])
    if bos_only:
        core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[bos])
    else:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[bos, eos])
    core.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>", model_max_length=128,
    )


# --------------------------------------------------------------------------------------------- builders


def _loaded(name: str, model: Any, **extra: Any) -> LoadedModel:
    spec = get_spec(name)
    return LoadedModel(name=name, family=spec.family, format=spec.format, path=None, model=model,
                       sample_rate=spec.sample_rate, **extra)


def _build_hf(name: str, device: str):
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import transformers

    config_cls, model_cls, kwargs = HF_CONFIGS[name]
    extra: dict[str, Any] = {}
    kwargs = dict(kwargs)
    if name in ("tiny-roberta", "tiny-llama"):
        extra["tokenizer"] = tiny_tokenizer(bos_only=name == "tiny-llama")
        kwargs["vocab_size"] = len(extra["tokenizer"])
    elif name == "tiny-whisper":
        extra["feature_extractor"] = transformers.WhisperFeatureExtractor(
            feature_size=kwargs["num_mel_bins"], sampling_rate=SAMPLE_RATE, chunk_length=TINY_WHISPER_CHUNK_S)
    else:
        extra["feature_extractor"] = transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True)
    config = getattr(transformers, config_cls)(**kwargs)
    with _seeded(name):
        model = getattr(transformers, model_cls)(config)
    return _loaded(name, model.to(device).eval(), **extra)


def build_tiny_wavlm(device: str = "cpu"):
    """Tiny WavLM (2 layers, 32-d): waveform (B, T) -> last_hidden_state (B, frames, 32)."""
    return _build_hf("tiny-wavlm", device)


def build_tiny_hubert(device: str = "cpu"):
    """Tiny HuBERT (2 layers, 32-d)."""
    return _build_hf("tiny-hubert", device)


def build_tiny_wav2vec2(device: str = "cpu"):
    """Tiny wav2vec 2.0 (2 layers, 32-d)."""
    return _build_hf("tiny-wav2vec2", device)


def build_tiny_data2vec(device: str = "cpu"):
    """Tiny data2vec-audio (2 layers, 32-d)."""
    return _build_hf("tiny-data2vec", device)


def build_tiny_whisper(device: str = "cpu"):
    """Tiny Whisper encoder-decoder (32-d) whose feature extractor pads/cuts audio to 1 s (100 mel frames)."""
    return _build_hf("tiny-whisper", device)


def build_tiny_roberta(device: str = "cpu"):
    """Tiny RoBERTa (2 layers, 32-d) with the tiny WordPiece tokenizer."""
    return _build_hf("tiny-roberta", device)


def build_tiny_llama(device: str = "cpu"):
    """Tiny LLaMA causal LM (2 layers, 32-d, GQA 4/2 heads) with the tiny tokenizer (bos only)."""
    return _build_hf("tiny-llama", device)


def build_tiny_soft_hubert(device: str = "cpu"):
    """Tiny soft-HuBERT (emotk's class; 32-d, 2 layers, 16-d units): waveform (B, T) -> (B, T // 320, 16)."""
    from emotk.features.encoders.soft_hubert import SoftHubertConfig, build_soft_hubert

    with _seeded("tiny-soft-hubert"):
        model = build_soft_hubert(SoftHubertConfig(**SOFT_HUBERT_TINY))
    return _loaded("tiny-soft-hubert", model.to(device).eval())


def build_tiny_emotion2vec(device: str = "cpu"):
    """Tiny emotion2vec (emotk's class; 32-d, 1 prenet + 2 blocks, 2 heads): waveform (B, T) -> frames
    (B, frames, 32). Layer norms, ALiBi scales and extra tokens are drawn at random too (not left at 1 / 0), so
    a weight that loads into the wrong place changes the output."""
    import torch

    from emotk.features.encoders.emotion2vec import Emotion2vecConfig, build_emotion2vec

    with _seeded("tiny-emotion2vec"):
        model = build_emotion2vec(Emotion2vecConfig(**EMOTION2VEC_TINY))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("alibi_scale"):
                    p.uniform_(0.3, 1.5)
                elif "norm" in name or name == "extra_tokens":
                    p.add_(0.1 * torch.randn_like(p))
    return _loaded("tiny-emotion2vec", model.to(device).eval())


def _ecapa_parts():
    """The speechbrain modules of tiny-ecapa (uses the current torch RNG)."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.processing.features import InputNormalization

    c = ECAPA_TINY
    embedding = ECAPA_TDNN(input_size=c["n_mels"], channels=c["channels"], kernel_sizes=c["kernel_sizes"],
                           dilations=c["dilations"], attention_channels=c["attention_channels"],
                           res2net_scale=c["res2net_scale"], se_channels=c["se_channels"],
                           lin_neurons=c["lin_neurons"])
    classifier = Classifier(input_size=c["lin_neurons"], lin_neurons=c["lin_neurons"], out_neurons=len(c["speakers"]))
    labels = CategoricalEncoder()
    labels.update_from_iterable(c["speakers"])
    modules = {
        "compute_features": Fbank(n_mels=c["n_mels"]),
        "mean_var_norm": InputNormalization(norm_type="sentence", std_norm=False),
        "embedding_model": embedding,
        "classifier": classifier,
    }
    return modules, labels


def build_tiny_ecapa(device: str = "cpu"):
    """Tiny ECAPA-TDNN speaker encoder as a speechbrain ``EncoderClassifier`` (24 mel bands, 16-d output):
    ``model.encode_batch(wav (B, T))`` -> (B, 1, 16)."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()  # speechbrain imports torchaudio, whose CUDA-only wheel fails here
    from speechbrain.inference.speaker import EncoderClassifier

    with _seeded("tiny-ecapa"):
        modules, labels = _ecapa_parts()
    hparams = {"label_encoder": labels, "modules": modules, "pretrained_path": None}
    model = EncoderClassifier(modules=modules, hparams=hparams, run_opts={"device": device})
    return _loaded("tiny-ecapa", model.eval())


def build_tiny(name: str, device: str = "cpu"):
    """Build the tiny model ``name`` (e.g. "tiny-wavlm") in memory; returns a :class:`~emotk.hub.types.LoadedModel`."""
    spec = get_spec(name)
    if not spec.is_tiny:
        raise UsageError(f"{name!r} is not a tiny model (tiny names: {', '.join(tiny_names())})")
    return _builder(spec.builder)(device=device)


def tiny_names() -> list[str]:
    """Return the names of all tiny variants, sorted."""
    return [s.name for s in list_specs() if s.is_tiny]


def _builder(ref: str) -> Callable[..., Any]:
    import importlib

    module, _, func = ref.partition(":")
    return getattr(importlib.import_module(module), func)


# --------------------------------------------------------------------------------------------- saving


def save_tiny(name: str, directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write tiny model ``name`` into ``directory`` in its family's real on-disk format; returns the directory.

    HF families: ``config.json`` + ``model.safetensors`` (+ ``preprocessor_config.json`` / tokenizer files).
    tiny-soft-hubert: ``config.json`` + ``hubert-soft.pt`` (upstream key names). tiny-emotion2vec: FunASR's
    ``model.pt`` + ``config.yaml``. tiny-ecapa:
    ``hyperparams.yaml`` + ``embedding_model.ckpt`` + ``classifier.ckpt`` + ``label_encoder.ckpt``. Each file is
    moved into place atomically; nothing else in ``directory`` is touched. Raises OutputExistsError when a
    file to write already exists and ``overwrite`` is False.
    """
    spec = get_spec(name)
    if not spec.is_tiny:
        raise UsageError(f"{name!r} is not a tiny model (tiny names: {', '.join(tiny_names())})")
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    loaded = build_tiny(name)
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=directory) as tmp_name:
        tmp = Path(tmp_name)
        if spec.format == "hf":
            loaded.model.save_pretrained(str(tmp), safe_serialization=True)
            for extra in (loaded.feature_extractor, loaded.tokenizer):
                if extra is not None:
                    extra.save_pretrained(str(tmp))
        elif name == "tiny-soft-hubert":
            from emotk.hub.soft_hubert import save_soft_hubert

            save_soft_hubert(loaded.model, tmp)
        elif name == "tiny-ecapa":
            _save_ecapa(loaded.model, tmp)
        elif name == "tiny-emotion2vec":
            from emotk.hub.emotion2vec import save_funasr

            save_funasr(loaded.model, tmp)
        else:  # pragma: no cover - every tiny name is one of the above
            raise UsageError(f"no saver for {name!r}")
        (tmp / "emotk-model.json").write_text(
            f'{{"name": "{name}", "family": "{spec.family}", "format": "{spec.format}", "seed": {seed_for(name)}}}\n',
            encoding="utf-8")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        clash = [p.relative_to(tmp) for p in files if (directory / p.relative_to(tmp)).exists()]
        if clash and not overwrite:
            raise OutputExistsError(f"{directory / clash[0]} already exists; pass --overwrite to replace it")
        for p in files:
            target = directory / p.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
    return directory


def _ecapa_yaml() -> str:
    """The HyperPyYAML of tiny-ecapa, mirroring speechbrain/spkrec-ecapa-voxceleb's layout."""
    c = ECAPA_TINY
    return f"""# tiny-ecapa: random-weight ECAPA-TDNN written by emotk.hub.tiny.save_tiny
pretrained_path: .
n_mels: {c["n_mels"]}
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {c["channels"]}
    kernel_sizes: {c["kernel_sizes"]}
    dilations: {c["dilations"]}
    attention_channels: {c["attention_channels"]}
    res2net_scale: {c["res2net_scale"]}
    se_channels: {c["se_channels"]}
    lin_neurons: {c["lin_neurons"]}
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {c["lin_neurons"]}
    lin_neurons: {c["lin_neurons"]}
    out_neurons: {len(c["speakers"])}
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.ckpt
"""


def _save_ecapa(model, directory: Path) -> None:
    import torch

    (directory / "hyperparams.yaml").write_text(_ecapa_yaml(), encoding="utf-8")
    torch.save(model.mods.embedding_model.state_dict(), directory / "embedding_model.ckpt")
    torch.save(model.mods.classifier.state_dict(), directory / "classifier.ckpt")
    model.hparams.label_encoder.save(directory / "label_encoder.ckpt")

