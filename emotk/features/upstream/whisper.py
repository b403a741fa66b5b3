"""Whisper encoders as upstreams: emotk's own encoder (all layers, any length; weights from CTranslate2 files),
transformers / openai-whisper (all layers, 30-s windows) and faster-whisper's CTranslate2 model (encoder output)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from emotk.core.audio import SAMPLE_RATE
from emotk.errors import UsageError
from emotk.features.upstream.base import Upstream, register_upstream


def _ensure_transformers_importable() -> None:
    """Run emotk's torchaudio workaround (transformers imports torchaudio, whose CUDA wheel fails on CPU)."""
    from emotk.compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()


class _WhisperWindows(Upstream):
    """Shared logic of the Whisper adapters: fixed windows, valid-frame arithmetic, long inputs.

    Whisper encodes a fixed window (30 s for the released models: ``positions`` output frames, each
    ``stride`` mel frames of ``mel_hop`` samples). Every input is zero-padded to the window, so an item's
    output never depends on its batch mates. The valid frames of n samples are
    ``ceil(ceil(n / mel_hop) / stride)`` (= ``ceil(n / 320)``); an input longer than the window is cut into
    consecutive windows whose valid frames are concatenated (same formula, as the window is a whole number
    of frames).
    """

    mel_hop: int
    stride: int
    positions: int

    @property
    def window_samples(self) -> int:
        return self.positions * self.stride * self.mel_hop

    @property
    def mel_frames(self) -> int:
        return self.positions * self.stride

    def output_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        n = torch.as_tensor(num_samples, dtype=torch.long)
        mel = (n + self.mel_hop - 1) // self.mel_hop
        return (mel + self.stride - 1) // self.stride

    def padded_input_samples(self, num_samples: int) -> int:
        w = self.window_samples
        return max(1, -(-int(num_samples) // w)) * w

    def _windows(self, wavs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """Cut each item into windows -> (chunks, [(item, valid frames of the chunk)])."""
        w = self.window_samples
        chunks, where = [], []
        for b, wav in enumerate(wavs):
            for start in range(0, wav.shape[0], w):
                piece = wav[start: start + w]
                chunks.append(piece)
                where.append((b, int(self.output_lengths(torch.tensor([piece.shape[0]]))[0])))
        return chunks, where

    def _assemble(self, layers: list[torch.Tensor], where: list[tuple[int, int]], batch: int) -> list[torch.Tensor]:
        """Per-chunk layers (C, positions, D) -> per-item layers (B, T_max, D), valid frames concatenated."""
        out = []
        for h in layers:
            parts: list[list[torch.Tensor]] = [[] for _ in range(batch)]
            for c, (b, n) in enumerate(where):
                parts[b].append(h[c, :n])
            out.append(nn.utils.rnn.pad_sequence([torch.cat(p, dim=0) for p in parts], batch_first=True))
        return out


@register_upstream
class WhisperEncoderUpstream(_WhisperWindows):
    """The Whisper encoder from emotk (:mod:`emotk.features.encoders.whisper`), transformers or openai-whisper;
    all layers.

    Layers: the embedding (convs + positions, "input"), the output of each block, and for the last block
    the output after the final LayerNorm (the encoder output, as transformers reports it), so
    num_layers = encoder layers + 1. Window, hop and stride are read from the model (see
    :class:`_WhisperWindows`). The log-mel front end is the model family's own: transformers'
    ``WhisperFeatureExtractor``, openai-whisper's ``log_mel_spectrogram`` or emotk's :class:`WhisperLogMel`.

    window: ``"full"`` pads every input to the 30-s window (the released models' regime; the CTranslate2 encoder
    output is matched), ``"native"`` encodes each input at its own length (positions sliced, batch padding
    masked; ~30 / duration times less compute; inputs over 30 s are cut into consecutive windows, the last one
    not padded). ``"native"`` needs emotk's encoder (transformers/openai-whisper encoders cannot mask padding)
    and is its default. Both give ``ceil(samples / 320)`` frames; they differ in value, as the released models'
    attention saw the padding of the window.
    """

    kinds = ("whisper", "whisper-hf", "whisper-pt")
    windows = ("full", "native")

    def __init__(self, model: Any, *, trainable: bool = False, window: str | None = None) -> None:
        super().__init__(trainable=trainable)
        self.window = window or "full"
        if window is not None and window not in self.windows:
            raise UsageError(f"window={window!r}: choose one of {', '.join(self.windows)}")
        if _is_emotk_whisper(model):
            from emotk.features.encoders.whisper import MEL_HOP, WhisperLogMel

            self.backend = "emotk"
            self.encoder = model
            self.n_mels = int(model.config.n_mels)
            self.positions = int(model.config.max_positions)
            self.mel_hop = MEL_HOP
            self.front_end = WhisperLogMel(self.n_mels).to(next(model.parameters()).device)
            self.window = window or "native"
        elif window == "native":
            raise UsageError("window='native' needs emotk's Whisper encoder, which masks padding: load the weights "
                             "from a CTranslate2 directory (upstream.name=whisper-ct2:DIR) or use window='full'")
        elif _is_openai_whisper(model):
            import whisper.audio as wa  # lazy

            encoder = model.encoder if hasattr(model, "encoder") else model
            self.backend = "openai"
            self.encoder = encoder
            self.n_mels = int(encoder.conv1.in_channels)
            self.mel_hop = int(wa.HOP_LENGTH)
            self.positions = int(encoder.positional_embedding.shape[0])
        else:
            encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
            if not hasattr(encoder, "embed_positions") or not hasattr(encoder, "conv1"):
                raise UsageError(f"{type(model).__name__} is not a Whisper model "
                                 "(no encoder with conv1/embed_positions)")
            self.backend = "hf"
            self.encoder = encoder
            self.n_mels = int(encoder.config.num_mel_bins)
            self.positions = int(encoder.config.max_source_positions)
        encoder = self.encoder
        self.stride = int(encoder.conv1.stride[0]) * int(encoder.conv2.stride[0])
        if self.backend == "hf":
            _ensure_transformers_importable()
            from transformers import WhisperFeatureExtractor

            hop = WhisperFeatureExtractor().hop_length
            seconds = self.positions * self.stride * hop / SAMPLE_RATE
            if seconds != int(seconds):
                raise UsageError(f"Whisper encoder window of {seconds} s is not a whole number of seconds")
            self._fe = WhisperFeatureExtractor(feature_size=self.n_mels, sampling_rate=SAMPLE_RATE,
                                               hop_length=hop, chunk_length=int(seconds))
            self.mel_hop = int(self._fe.hop_length)
        self.set_trainable(trainable)
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        if _is_openai_whisper(model) or _is_emotk_whisper(model):
            return True
        cfg = getattr(model, "config", None)
        return type(model).__module__.startswith("transformers.") and getattr(cfg, "model_type", "") == "whisper"

    def padded_input_samples(self, num_samples: int) -> int:
        return int(num_samples) if self.window == "native" else super().padded_input_samples(num_samples)

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        chunks, where = self._windows(wavs)
        if self.backend == "emotk":
            layers = self._encode_emotk(chunks)
        elif self.backend == "hf":
            feats = self._fe([c.detach().float().cpu().numpy() for c in chunks], sampling_rate=SAMPLE_RATE,
                             return_tensors="pt", padding="max_length", max_length=self.window_samples,
                             device=str(chunks[0].device))
            mel = feats["input_features"].to(chunks[0].device, self._dtype())
            layers = list(self.encoder(mel, output_hidden_states=True, return_dict=True).hidden_states)
        else:
            layers = self._encode_openai(chunks)
        return self._assemble(layers, where, len(wavs)), self.output_lengths(lengths)

    def _encode_emotk(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Chunks (S_c,) -> L tensors (C, T, D): per-chunk log-mel (native: its own length; full: the window),
        zero-padded to the longest, through the masked encoder."""
        frames = None if self.window == "native" else self.mel_frames
        mels = [self.front_end(c, frames) for c in chunks]  # (n_mels, M_c) each
        mel_lengths = torch.tensor([m.shape[1] for m in mels], dtype=torch.long)
        mel = nn.utils.rnn.pad_sequence([m.T for m in mels], batch_first=True).transpose(1, 2)
        layers, _ = self.encoder.hidden_states(mel.to(self._dtype()), mel_lengths if frames is None else None)
        return layers

    def _encode_openai(self, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        import whisper.audio as wa

        mel = torch.stack([wa.log_mel_spectrogram(wa.pad_or_trim(c.float(), self.window_samples), self.n_mels)
                           for c in chunks])[..., : self.mel_frames].to(self._dtype())
        collected: list[torch.Tensor] = []
        blocks = list(self.encoder.blocks)
        handles = [blocks[0].register_forward_pre_hook(lambda m, args: collected.append(args[0]))]
        handles += [b.register_forward_hook(lambda m, args, out: collected.append(out)) for b in blocks[:-1]]
        try:
            final = self.encoder(mel)
        finally:
            for h in handles:
                h.remove()
        return collected + [final]


def _is_emotk_whisper(model: Any) -> bool:
    return type(model).__module__ == "emotk.features.encoders.whisper" and hasattr(model, "hidden_states")


def _is_openai_whisper(model: Any) -> bool:
    mod = type(model).__module__
    encoder = getattr(model, "encoder", None)
    return mod.startswith("whisper.") and (hasattr(model, "blocks") or hasattr(encoder, "blocks"))


@register_upstream
class CT2WhisperUpstream(_WhisperWindows):
    """A faster-whisper ``WhisperModel`` (CTranslate2): the encoder output only (one layer, "encoder_output").

    The audio is zero-padded to the window before the log-mel (as openai-whisper and transformers do),
    encoded in one CTranslate2 call per batch (``model.model.encode``; the StorageView is copied to a numpy
    array) and sliced to the valid frames. Not trainable; the wrapped model keeps its own device
    (``WhisperModel(..., device=...)``).
    """

    kinds = ("whisper-ct2",)

    def __init__(self, model: Any, *, trainable: bool = False) -> None:
        if trainable:
            raise UsageError("a CTranslate2 Whisper model cannot be fine-tuned; load a transformers or openai-whisper "
                             "checkpoint of the same model for a trainable upstream")
        super().__init__(trainable=False)
        if not (hasattr(model, "model") and hasattr(model, "feature_extractor")):
            raise UsageError(f"{type(model).__name__} is not a faster_whisper.WhisperModel")
        self.whisper = model
        fe = model.feature_extractor
        self.mel_hop = int(fe.hop_length)
        # the conv stride, probed from the encoder on a short input (mel frames in / frames out)
        probe_frames = 200
        out = self._run(np.zeros((1, int(model.model.n_mels), probe_frames), dtype=np.float32))
        self.stride = max(1, round(probe_frames / int(out.shape[1])))
        self.positions = int(fe.nb_max_frames) // self.stride
        self._probe()

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return type(model).__module__.startswith("faster_whisper")

    def set_trainable(self, trainable: bool) -> "CT2WhisperUpstream":
        if trainable:
            raise UsageError("a CTranslate2 Whisper model cannot be fine-tuned")
        return super().set_trainable(False)

    def _names(self, num_layers: int) -> list[str]:
        return ["encoder_output"]

    def _run(self, features: np.ndarray) -> np.ndarray:
        import ctranslate2

        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
        out = self.whisper.model.encode(storage, to_cpu=True)
        return np.asarray(out, dtype=np.float32)

    def _encode(self, wavs: list[torch.Tensor], lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        chunks, where = self._windows(wavs)
        fe = self.whisper.feature_extractor
        mels = []
        for c in chunks:
            a = c.detach().float().cpu().numpy()
            a = np.pad(a, (0, self.window_samples - a.shape[0]))
            mels.append(fe(a, padding=0)[:, : self.mel_frames])
        out = torch.from_numpy(self._run(np.stack(mels)))
        return self._assemble([out], where, len(wavs)), self.output_lengths(lengths)
