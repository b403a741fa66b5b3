"""Load a registered pretrained model from its local copy into a ready-to-use object.

``load(name)`` resolves the model (:func:`emotk.hub.resolve.resolve`, never the network) and builds the
object its family needs; ``tiny-*`` names without a local copy are built in memory. Every Hugging Face load
uses ``local_files_only=True``; :func:`emotk.compat.ensure_torchaudio_importable` runs before transformers or
speechbrain are imported.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from emotk.errors import DataError, EmotkError
from emotk.hub.registry import HF_WEIGHT_FILES, ModelSpec, get_spec
from emotk.hub.types import LoadedModel

# transformers class that loads each Hugging Face family.
HF_CLASSES = {
    "wavlm": "WavLMModel",
    "hubert": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "data2vec-audio": "Data2VecAudioModel",
    "whisper": "WhisperModel",
    "roberta": "RobertaModel",
    "minilm": "AutoModel",
    "llama": "AutoModelForCausalLM",
    "qwen2": "AutoModelForCausalLM",
    "qwen2-audio": "Qwen2AudioForConditionalGeneration",
}
_AUDIO_FAMILIES = {"wavlm", "hubert", "wav2vec2", "data2vec-audio", "whisper", "qwen2-audio"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model")


def load(name: str, path: str | os.PathLike | None = None, device: str = "cpu", offline: bool | None = None,
         verify: bool = False, **kwargs: Any) -> LoadedModel:
    """Load model ``name`` onto ``device`` ("cpu", "cuda", "cuda:N") and return a :class:`LoadedModel`.

    ``path`` overrides where the model is looked for (an HF directory, a ``.pt`` file, ...). A ``tiny-*`` name
    without ``path`` and without a copy in ``$EMOTK_MODELS`` is built in memory (seeded: identical weights for
    the same name). ``verify`` checks the registry's sha256 digests; extra ``kwargs`` go to the family's
    loader (e.g. ``torch_dtype`` for transformers, ``compute_type`` for CTranslate2). Raises
    ModelNotFoundError (one line, with the fetch command) when the model is not available locally, DataError
    when its files cannot be read, EmotkError for a family emotk cannot load yet.
    """
    spec = get_spec(name)
    if spec.is_tiny and path is None:
        from emotk.hub.resolve import locate

        if locate(name) is None:
            from emotk.hub.tiny import build_tiny

            return build_tiny(name, device=device)
    from emotk.hub.resolve import resolve

    local = resolve(name, path=path, offline=offline, verify=verify)
    loader = _loader_for(spec)
    return loader(spec, local, device, **kwargs)


def check_available(name: str, path: str | os.PathLike | None = None) -> None:
    """Raise what :func:`load` would raise for a name it cannot load (unknown name, no local copy, no loader),
    without loading anything: commands call it before they create their output folder."""
    spec = get_spec(name)
    if not (spec.is_tiny and path is None):
        from emotk.hub.resolve import resolve

        resolve(name, path=path)
    _loader_for(spec)


def _loader_for(spec: ModelSpec) -> Callable[..., LoadedModel]:
    if not spec.loadable:
        raise EmotkError(f"model {spec.name!r} ({spec.family}) is registered so that its files can be found "
                         f"(`emotk models path {spec.name}`), but emotk has no loader for it yet")
    if spec.format == "hf":
        return _load_hf
    by_format = {"whisper-pt": _load_whisper_pt, "ct2": _load_ct2, "speechbrain": _load_speechbrain}
    if spec.format in by_format:
        return by_format[spec.format]
    by_family = {"soft-hubert": _load_soft_hubert, "resemblyzer": _load_resemblyzer, "emotion2vec": _load_emotion2vec}
    if spec.family in by_family:
        return by_family[spec.family]
    raise EmotkError(f"model {spec.name!r}: no loader for family {spec.family!r} in format {spec.format!r}")


def quiet_progress() -> None:
    """Hide transformers / huggingface_hub progress bars unless emotk shows progress (a terminal, not -q)."""
    from emotk.core.context import options

    if options.show_progress:
        return
    with contextlib.suppress(Exception):
        import transformers

        transformers.utils.logging.disable_progress_bar()
    with contextlib.suppress(Exception):
        import huggingface_hub

        huggingface_hub.utils.disable_progress_bars()


def _torch_device(device: str) -> str:
    return device or "cpu"


def _load_hf(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """Hugging Face transformers directory -> model (+ feature extractor / tokenizer / processor).

    A Whisper name whose location is a CTranslate2 directory (no transformers weights; e.g. the bundled tiny.en
    for ``whisper-tiny.en``) loads as emotk's PyTorch encoder (:func:`_load_ct2_encoder`)."""
    if spec.alt_files and not any((path / w).is_file() for w in HF_WEIGHT_FILES) \
            and all((path / f).is_file() for f in spec.alt_files):
        return _load_ct2_encoder(spec, path, device, **kwargs)
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import transformers

    quiet_progress()
    cls_name = HF_CLASSES.get(spec.family)
    if cls_name is None:
        raise EmotkError(f"model {spec.name!r}: no transformers class known for family {spec.family!r}")
    cls = getattr(transformers, cls_name)
    try:
        model = cls.from_pretrained(str(path), local_files_only=True, **kwargs)
    except OSError as err:
        raise DataError(f"model {spec.name!r}: cannot load {path} ({str(err).splitlines()[0]})") from None
    model = model.to(_torch_device(device)).eval()
    out = LoadedModel(spec.name, spec.family, spec.format, path, model, sample_rate=spec.sample_rate)
    if spec.family in _AUDIO_FAMILIES and (path / "preprocessor_config.json").is_file():
        out.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    if any((path / f).is_file() for f in _TOKENIZER_FILES):
        out.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if spec.family == "qwen2-audio":
        out.processor = transformers.AutoProcessor.from_pretrained(str(path), local_files_only=True)
    return out


def _load_whisper_pt(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """openai-whisper ``.pt`` file -> ``whisper.model.Whisper`` (``whisper.load_model(path)``)."""
    import whisper

    model = whisper.load_model(str(path), device=_torch_device(device), **kwargs)
    return LoadedModel(spec.name, spec.family, spec.format, path, model.eval(), sample_rate=spec.sample_rate)


def _load_ct2(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """CTranslate2 directory -> ``faster_whisper.WhisperModel`` (int8 on CPU, float16 on CUDA by default)."""
    from faster_whisper import WhisperModel

    dev, _, index = (device or "cpu").partition(":")
    if dev == "cuda":
        kwargs.setdefault("compute_type", "float16")
        kwargs.setdefault("device_index", int(index or 0))
    else:
        dev = "cpu"
        kwargs.setdefault("compute_type", "int8")
        from emotk.core.runtime import available_cores

        kwargs.setdefault("cpu_threads", available_cores())
    model = WhisperModel(str(path), device=dev, **kwargs)
    return LoadedModel(spec.name, spec.family, spec.format, path, model, sample_rate=spec.sample_rate)


def _load_ct2_encoder(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """CTranslate2 Whisper directory -> emotk's PyTorch ``WhisperEncoder`` (every layer, any input length), read
    by emotk's own reader and cached as safetensors (:mod:`emotk.hub.ct2_whisper`)."""
    from emotk.hub.ct2_whisper import load_ct2_whisper_encoder

    if kwargs:
        raise EmotkError(f"model {spec.name!r} (CTranslate2 files as a PyTorch encoder): unexpected options "
                         f"{', '.join(sorted(kwargs))}")
    model = load_ct2_whisper_encoder(path, device=_torch_device(device))
    return LoadedModel(spec.name, spec.family, "ct2", path, model, sample_rate=spec.sample_rate)


def _load_speechbrain(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """SpeechBrain directory (``hyperparams.yaml`` + checkpoints) -> ``EncoderClassifier``.

    ``overrides={"pretrained_path": dir}`` keeps speechbrain off the hub even for a local source. The yaml is
    executed by HyperPyYAML (it builds objects), so only load directories you trust.
    """
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    from speechbrain.inference.speaker import EncoderClassifier

    overrides = {"pretrained_path": str(path), **kwargs.pop("overrides", {})}
    # speechbrain links files it expects under another name into savedir: use the model folder itself when
    # writable (nothing to link for a complete copy), else a per-user folder (read-only HF caches, packages).
    savedir = path if os.access(path, os.W_OK) else _speechbrain_savedir(spec.name)
    model = EncoderClassifier.from_hparams(source=str(path), savedir=str(savedir), overrides=overrides,
                                           run_opts={"device": _torch_device(device)}, **kwargs)
    return LoadedModel(spec.name, spec.family, spec.format, path, model.eval(), sample_rate=spec.sample_rate)


def _speechbrain_savedir(name: str) -> Path:
    from emotk.hub.resolve import models_dir

    savedir = models_dir() / ".speechbrain" / name
    savedir.mkdir(parents=True, exist_ok=True)
    return savedir


def _load_soft_hubert(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """bshall/hubert soft checkpoint (file, or folder with config.json) -> emotk's SoftHubert."""
    from emotk.hub.soft_hubert import load_soft_hubert

    if kwargs:
        raise EmotkError(f"model {spec.name!r}: unexpected options {', '.join(sorted(kwargs))}")
    model = load_soft_hubert(path, device=_torch_device(device))
    return LoadedModel(spec.name, spec.family, spec.format, path, model, sample_rate=spec.sample_rate)


def _load_emotion2vec(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """emotion2vec checkpoint (FunASR folder, fairseq ``.pt`` or state dict) -> emotk's Emotion2vec."""
    from emotk.hub.emotion2vec import load_emotion2vec

    if kwargs:
        raise EmotkError(f"model {spec.name!r}: unexpected options {', '.join(sorted(kwargs))}")
    model = load_emotion2vec(path, device=_torch_device(device))
    return LoadedModel(spec.name, spec.family, spec.format, path, model, sample_rate=spec.sample_rate)


def _load_resemblyzer(spec: ModelSpec, path: Path, device: str, **kwargs: Any) -> LoadedModel:
    """Resemblyzer weights file -> ``resemblyzer.VoiceEncoder`` (quiet: nothing printed on stdout)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation notice
        from resemblyzer import VoiceEncoder

    with contextlib.redirect_stdout(io.StringIO()):
        model = VoiceEncoder(device=_torch_device(device), verbose=False, weights_fpath=path, **kwargs)
    return LoadedModel(spec.name, spec.family, spec.format, path, model.eval(), sample_rate=spec.sample_rate)
