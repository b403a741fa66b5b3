"""HCAM, the hierarchical cross-attention model for emotion recognition in conversations (thesis 4.1.2, METHODS §3).

Three stages, each trained on the frozen previous one (the ERC task wires them; these are the networks):

* Stage I, one utterance, no context -- on an encoder's precomputed hidden states (B, L, N, D) + lengths (B,):
  :class:`HcamTextUtteranceHead` (last 4 layers spliced -> bi-GRU -> masked pool -> classifier) and
  :class:`HcamSpeechUtteranceHead` (sum of all layers -> 1D-CNN -> masked mean -> classifier).
* Stage II, context within one modality -- on the dialogue's utterance embeddings (B, T, D), turn mask (B, T) and
  speakers (B, T): :class:`HcamContext` (thesis: bi-GRU -> self-attention -> position-wise FFN) and
  :class:`HcamContextReference` (the authors' code: four GRU + masked self-attention branches, global ±32 /
  local ±1 / speaker / listener, concatenated with a linear skip of the input).
* Stage III, fusion -- :class:`HcamFusion`: co-attention (cross-attention both ways, each followed by
  self-attention, Eq. 4.1–4.3), the two arms concatenated -> position-wise FFN -> classifier.

Every forward returns ``(logits, embedding)``; the embedding is what the next stage consumes and what the
supervised contrastive loss (:func:`emotk.losses.ce_supcon`) pulls together. Padding never reaches a valid output:
inputs are zeroed on padding, GRUs run on packed sequences, attention masks padded keys, and padded output rows are
zero (embeddings) so a batch of dialogues gives each dialogue's own result.

Causal mode (``causal=True``, online ERC): a turn's output depends only on turns <= t. Attention masks are causal,
and the GRUs run forward only: a bidirectional GRU's backward direction reads the future (its state at t summarises
t..T), so it cannot be cut by a mask. To keep the output width (and so the next stage) unchanged, the forward-only GRU
gets twice the hidden size of one bi-GRU direction (about twice the recurrent parameters of one direction each, a
similar total). Causal models also have ``step`` (one turn of one dialogue, with a cached state: the GRU advances one
step, attention reads cached past rows), which gives the batch causal outputs turn by turn -- online ERC.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emotk.errors import ConfigError, UsageError
from emotk.nn.attention import AttentionBlock
from emotk.nn.masks import as_mask, turn_attention_mask
from emotk.nn.pooling import masked_mean

COMPAT = ("thesis", "reference")
TEXT_POOLINGS = ("mean", "max")


def _check_dropout(dropout: float) -> float:
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return float(dropout)


def _stack_layers(hidden: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, L, N, D) or a sequence of L tensors (B, N, D) (an HF ``hidden_states`` tuple) -> (B, L, N, D)."""
    if not isinstance(hidden, torch.Tensor):
        hidden = torch.stack(list(hidden), dim=1)
    if hidden.ndim != 4:
        raise UsageError(f"expected hidden states (B, L, N, D), got shape {tuple(hidden.shape)}")
    return hidden


class MaskedGRU(nn.Module):
    """GRU over the valid prefix of each sequence (packed, so padding never enters either direction).

    (B, T, in_dim) + lengths (B,) -> (B, T, out_dim), zeros on padding; ``out_dim = hidden·2`` (bidirectional) or
    ``hidden`` (forward only). A length of 0 gives an all-zero row.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1 or layers < 1:
            raise ConfigError(f"GRU sizes must be positive: in_dim={in_dim}, hidden={hidden}, layers={layers}")
        self.bidirectional = bool(bidirectional)
        self.out_dim = int(hidden) * (2 if bidirectional else 1)
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                          dropout=_check_dropout(dropout) if layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        cpu_lengths = lengths.detach().to("cpu", torch.long)
        packed = pack_padded_sequence(x, cpu_lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        valid = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]
        return out.masked_fill(~valid[..., None], 0.0)


class PositionwiseFFN(nn.Module):
    """Position-wise feed-forward block with ReLU: ``LayerNorm(x + W2 · dropout(ReLU(W1 x)))``, (B, T, dim) -> same."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(_check_dropout(dropout)),
                                 nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.net(x))


# ----------------------------------------------------------------------------------------------- stage I


class HcamTextUtteranceHead(nn.Module):
    """Stage I text head: the last ``spliced_layers`` hidden layers of a token encoder (RoBERTa) concatenated along
    the feature axis -> bi-GRU -> masked pooling over tokens -> dropout -> linear classifier.

    hidden_dim: D of one encoder layer; num_classes: C; spliced_layers: 4 (thesis; "spliced" read as concatenated,
    giving 4·D features per token); gru_hidden / gru_layers: the bi-GRU (embedding width ``2·gru_hidden``; the
    thesis gives no size); pooling: ``mean`` (masked mean) or ``max`` (masked max) over tokens.

    forward(hidden (B, L, N, D) or L tensors (B, N, D) with L >= spliced_layers, lengths (B,) tokens or
    mask (B, N) bool) -> (logits (B, C), embedding (B, 2·gru_hidden)).
    """

    def __init__(self, hidden_dim: int, num_classes: int, spliced_layers: int = 4, gru_hidden: int = 256,
                 gru_layers: int = 1, pooling: str = "mean", dropout: float = 0.0) -> None:
        super().__init__()
        if pooling not in TEXT_POOLINGS:
            raise ConfigError(f"text head pooling {pooling!r} is not one of {', '.join(TEXT_POOLINGS)}")
        if spliced_layers < 1 or num_classes < 2:
            raise ConfigError(f"need spliced_layers >= 1 and >= 2 classes, got {spliced_layers}, {num_classes}")
        self.spliced_layers, self.pooling = int(spliced_layers), pooling
        self.gru = MaskedGRU(hidden_dim * spliced_layers, gru_hidden, gru_layers, bidirectional=True,
                             dropout=dropout)
        self.out_dim = self.gru.out_dim
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(self.out_dim, num_classes)

    def forward(self, hidden: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = _stack_layers(hidden)
        if hidden.shape[1] < self.spliced_layers:
            raise UsageError(f"the text head splices the last {self.spliced_layers} layers but got "
                             f"{hidden.shape[1]}")
        b, _, n, _ = hidden.shape
        mask = as_mask(hidden, lengths, mask, time_dim=2)
        tokens = hidden[:, -self.spliced_layers:].permute(0, 2, 1, 3).reshape(b, n, -1)  # (B, N, 4·D)
        tokens = tokens.masked_fill(~mask[..., None], 0.0)
        states = self.gru(tokens, mask.sum(dim=1))
        if self.pooling == "mean":
            embedding = masked_mean(states, mask)
        else:
            embedding = states.masked_fill(~mask[..., None], torch.finfo(states.dtype).min).amax(dim=1)
            embedding = embedding.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)
        return self.classifier(self.dropout(embedding)), embedding


class HcamSpeechUtteranceHead(nn.Module):
    """Stage I speech head: the (unweighted) sum of all hidden layers of an SSL encoder -> 1D-CNN -> masked mean over
    frames -> dropout -> linear classifier.

    The CNN is the reference code's: Conv1d(D -> conv_dim, k) + ReLU -> Conv1d(conv_dim -> conv_dim, k) + ReLU,
    k = 1 (``kernel_size``; odd, "same" padding; padded frames are zeroed first, so a longer k sees exactly the
    zeros an unpadded utterance's border sees). conv_dim: 128 (reference).

    forward(hidden (B, L, T, D) or L tensors (B, T, D), lengths (B,) frames or mask (B, T))
    -> (logits (B, C), embedding (B, conv_dim)).
    """

    def __init__(self, hidden_dim: int, num_classes: int, conv_dim: int = 128, kernel_size: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"speech head kernel_size must be odd and >= 1, got {kernel_size}")
        if num_classes < 2 or conv_dim < 1:
            raise ConfigError(f"need >= 2 classes and conv_dim >= 1, got {num_classes}, {conv_dim}")
        pad = kernel_size // 2
        self.conv = nn.Sequential(nn.Conv1d(hidden_dim, conv_dim, kernel_size, padding=pad), nn.ReLU(),
                                  nn.Conv1d(conv_dim, conv_dim, kernel_size, padding=pad), nn.ReLU())
        self.out_dim = int(conv_dim)
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(self.out_dim, num_classes)

    def forward(self, hidden: torch.Tensor | Sequence[torch.Tensor], lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = _stack_layers(hidden)
        mask = as_mask(hidden, lengths, mask, time_dim=2)
        keep = mask[:, None, :]  # (B, 1, T)
        states = hidden.masked_fill(~mask[:, None, :, None], 0.0).sum(dim=1).transpose(1, 2)  # (B, D, T)
        for layer in self.conv:  # re-zero padding after each conv: ReLU(bias) must not leak in at a border
            states = layer(states)
            if isinstance(layer, nn.ReLU):
                states = states.masked_fill(~keep, 0.0)
        states = states.transpose(1, 2)  # (B, T, conv_dim)
        embedding = masked_mean(states, mask)
        return self.classifier(self.dropout(embedding)), embedding


# ---------------------------------------------------------------------------------------------- stage II


def _check_turns(x: torch.Tensor, mask: torch.Tensor, name: str = "x") -> torch.Tensor:
    if x.ndim != 3 or tuple(mask.shape) != tuple(x.shape[:2]):
        raise UsageError(f"{name} must be (B, T, D) with mask (B, T); got {tuple(x.shape)} and {tuple(mask.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)


def _check_step(module: nn.Module, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """One turn's vector (D,) -> (1, 1, D); ``step`` needs a causal model (a bidirectional one reads the future)."""
    if not module.causal:
        raise UsageError(f"{type(module).__name__}.step needs a causal model (causal=True): without it a turn's "
                         "output depends on later turns")
    if x.ndim != 1:
        raise UsageError(f"{name} must be one turn's vector (D,), got shape {tuple(x.shape)}")
    return x[None, None]


def _last_row(t: int, speakers: torch.Tensor | None, kind: str, window: int | None,
              device: torch.device) -> torch.Tensor:
    """The causal attention row of turn t-1 over turns 0..t-1: (1, 1, t) -- the last row of the batch mask."""
    mask = torch.ones(1, t, dtype=torch.bool, device=device)
    return turn_attention_mask(mask, speakers, kind, window, causal=True)[:, -1:, :]


def _gru_step(gru: MaskedGRU, x: torch.Tensor, state: dict, key: str) -> torch.Tensor:
    """One forward-GRU step (1, 1, in) from the cached hidden state; appends the output to ``state[key]``."""
    out, state[key + ".h"] = gru.gru(x, state.get(key + ".h"))
    past = state.get(key)
    state[key] = out if past is None else torch.cat([past, out], dim=1)
    return out


class HcamContext(nn.Module):
    """Stage II (thesis): bi-GRU over the dialogue's utterance embeddings -> multi-head self-attention (Eq. 4.1–4.3)
    -> position-wise FFN (ReLU) -> dropout -> linear classifier, per turn.

    in_dim: utterance embedding width (stage I output); num_classes: C; gru_hidden / gru_layers: the bi-GRU (the
    thesis gives no sizes; defaults follow the reference code: 200, 2 layers); attention_dim / heads: 360 / 3
    (reference); ffn_dim: FFN hidden width (default ``attention_dim``); window: self-attention span ±window turns
    (None: the whole dialogue); causal: only past and present turns (forward GRU of hidden ``2·gru_hidden``, causal
    attention mask); dropout: between layers.

    forward(x (B, T, in_dim), mask (B, T) bool, speaker (B, T) long or None -- unused here)
    -> (logits (B, T, C), embedding (B, T, attention_dim)); embeddings are 0 on padded turns.
    """

    compat = "thesis"

    def __init__(self, in_dim: int, num_classes: int, gru_hidden: int = 200, gru_layers: int = 2,
                 attention_dim: int = 360, heads: int = 3, ffn_dim: int | None = None, window: int | None = None,
                 causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"stage II needs >= 2 classes, got {num_classes}")
        self.causal, self.window = bool(causal), window
        self.gru = MaskedGRU(in_dim, gru_hidden * (2 if causal else 1), gru_layers, bidirectional=not causal,
                             dropout=dropout)
        self.attention = AttentionBlock(self.gru.out_dim, attention_dim, heads, dropout=dropout)
        self.ffn = PositionwiseFFN(attention_dim, ffn_dim or attention_dim, dropout)
        self.out_dim = int(attention_dim)
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(self.out_dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = _check_turns(x, mask)
        keep = mask[..., None]
        states = self.gru(x.masked_fill(~keep, 0.0), mask.sum(dim=1))
        allowed = turn_attention_mask(mask, kind="global", window=self.window, causal=self.causal)
        embedding = self.ffn(self.attention(states, allowed=allowed)).masked_fill(~keep, 0.0)
        return self.classifier(self.dropout(embedding)), embedding

    def step(self, x: torch.Tensor, speaker: int | None = None,
             state: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Online ERC, one turn of one dialogue (causal models only): x (in_dim,) -> (logits (C,),
        embedding (out_dim,), state). Start a dialogue with ``state=None`` and pass the returned state with its next
        turn. The GRU advances one step from its cached hidden state and the attention reads the cached past states,
        so a turn costs O(t), and the outputs equal :meth:`forward` on the whole dialogue (use eval mode)."""
        x = _check_step(self, x)
        state = {} if state is None else state
        out = _gru_step(self.gru, x, state, "gru")
        allowed = _last_row(state["gru"].shape[1], None, "global", self.window, x.device)
        embedding = self.ffn(self.attention(out, state["gru"], allowed))[0, 0]
        return self.classifier(self.dropout(embedding)), embedding, state


REFERENCE_BRANCHES = ("global", "local", "speaker", "listener")


class HcamContextReference(nn.Module):
    """Stage II as in the authors' code (``compat: reference``): four branches, each a 2-layer bi-GRU (hidden 200)
    over the utterance embeddings followed by self-attention (360-d, 3 heads, Eq. 4.1–4.3) under its own dialogue
    mask -- global (±32 turns), local (±1; METHODS.md's ±2 is wrong), same speaker, listener (other speakers) --
    the branch outputs concatenated with a linear skip of the input (``skip_dim``) -> dropout -> linear classifier.

    forward(x (B, T, in_dim), mask (B, T) bool, speaker (B, T) long) -> (logits (B, T, C),
    embedding (B, T, 4·attention_dim + skip_dim)); embeddings are 0 on padded turns. ``causal`` as in
    :class:`HcamContext` (forward GRUs of hidden ``2·gru_hidden``, causal masks in every branch).
    """

    compat = "reference"

    def __init__(self, in_dim: int, num_classes: int, gru_hidden: int = 200, gru_layers: int = 2,
                 attention_dim: int = 360, heads: int = 3, global_window: int | None = 32, local_window: int = 1,
                 skip_dim: int = 360, causal: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"stage II needs >= 2 classes, got {num_classes}")
        self.causal = bool(causal)
        self.windows = {"global": global_window, "local": local_window, "speaker": None, "listener": None}
        self.grus = nn.ModuleDict({
            kind: MaskedGRU(in_dim, gru_hidden * (2 if causal else 1), gru_layers, bidirectional=not causal,
                            dropout=dropout) for kind in REFERENCE_BRANCHES})
        self.attentions = nn.ModuleDict({
            kind: AttentionBlock(self.grus[kind].out_dim, attention_dim, heads, dropout=dropout)
            for kind in REFERENCE_BRANCHES})
        self.skip = nn.Linear(in_dim, skip_dim)
        self.out_dim = 4 * int(attention_dim) + int(skip_dim)
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(self.out_dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = _check_turns(x, mask)
        if speaker is None:
            raise UsageError("the reference stage II needs the speaker of every turn (speaker/listener masks)")
        keep = mask[..., None]
        x = x.masked_fill(~keep, 0.0)
        lengths = mask.sum(dim=1)
        parts = []
        for kind in REFERENCE_BRANCHES:
            allowed = turn_attention_mask(mask, speaker, kind, self.windows[kind], self.causal)
            parts.append(self.attentions[kind](self.grus[kind](x, lengths), allowed=allowed))
        parts.append(self.skip(x))
        embedding = torch.cat(parts, dim=-1).masked_fill(~keep, 0.0)
        return self.classifier(self.dropout(embedding)), embedding

    def step(self, x: torch.Tensor, speaker: int | None = None,
             state: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Online ERC, one turn (causal models only): x (in_dim,), speaker (int, the turn's speaker index within
        the dialogue) -> (logits (C,), embedding (out_dim,), state); as :meth:`HcamContext.step`."""
        x = _check_step(self, x)
        if speaker is None:
            raise UsageError("the reference stage II needs each turn's speaker (speaker/listener masks)")
        state = {} if state is None else state
        now = torch.tensor([[int(speaker)]], device=x.device)
        state["speakers"] = now if "speakers" not in state else torch.cat([state["speakers"], now], dim=1)
        t = state["speakers"].shape[1]
        parts = []
        for kind in REFERENCE_BRANCHES:
            out = _gru_step(self.grus[kind], x, state, kind)
            allowed = _last_row(t, state["speakers"], kind, self.windows[kind], x.device)
            parts.append(self.attentions[kind](out, state[kind], allowed))
        parts.append(self.skip(x))
        embedding = torch.cat(parts, dim=-1)[0, 0]
        return self.classifier(self.dropout(embedding)), embedding, state


def build_context(compat: str, in_dim: int, num_classes: int, **options) -> nn.Module:
    """Stage II by compat name: ``thesis`` -> :class:`HcamContext`, ``reference`` -> :class:`HcamContextReference`."""
    if compat not in COMPAT:
        raise ConfigError(f"stage II compat {compat!r} is not one of {', '.join(COMPAT)}")
    cls = HcamContext if compat == "thesis" else HcamContextReference
    return cls(in_dim, num_classes, **options)


# --------------------------------------------------------------------------------------------- stage III


class CoAttentionLayer(nn.Module):
    """One co-attention layer (thesis): each modality's arm is a cross-attention whose queries are its own turns
    and whose keys/values are the other modality's turns, followed by a self-attention over its own result:

        t' = SA(CA(t <- s)),   s' = SA(CA(s <- t))     (all Eq. 4.1–4.3 blocks, multi-head)

    Both arms read the layer's inputs (a simultaneous update). The reference code throws the self-attention
    output away (a bug); here it is the arm's output.

    forward(text (B, T, text_dim), speech (B, T, speech_dim), allowed (B, T, T)) -> (text', speech'), each
    (B, T, dim).
    """

    def __init__(self, text_dim: int, speech_dim: int, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.text_cross = AttentionBlock(text_dim, dim, heads, key_dim=speech_dim, dropout=dropout)
        self.text_self = AttentionBlock(dim, dim, heads, dropout=dropout)
        self.speech_cross = AttentionBlock(speech_dim, dim, heads, key_dim=text_dim, dropout=dropout)
        self.speech_self = AttentionBlock(dim, dim, heads, dropout=dropout)

    def forward(self, text: torch.Tensor, speech: torch.Tensor,
                allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.text_self(self.text_cross(text, speech, allowed), allowed=allowed)
        s = self.speech_self(self.speech_cross(speech, text, allowed), allowed=allowed)
        return t, s


class HcamFusion(nn.Module):
    """Stage III: ``layers`` co-attention layers (:class:`CoAttentionLayer`) over the stage II turn embeddings of
    text and speech, the two arms concatenated -> position-wise FFN (ReLU) -> dropout -> linear classifier.

    text_dim, speech_dim: stage II embedding widths; num_classes: C; dim / heads / layers: 60 / 3 / 2 (the
    reference's; the thesis gives no sizes); ffn_dim: FFN hidden width (default ``2·dim``); window: attention span
    ±window turns (None: all); causal: only past and present turns; dropout.

    forward(text (B, T, text_dim), speech (B, T, speech_dim), mask (B, T) bool, speaker ignored)
    -> (logits (B, T, C), embedding (B, T, 2·dim)); embeddings are 0 on padded turns.
    """

    def __init__(self, text_dim: int, speech_dim: int, num_classes: int, dim: int = 60, heads: int = 3,
                 layers: int = 2, ffn_dim: int | None = None, window: int | None = None, causal: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2 or layers < 1:
            raise ConfigError(f"stage III needs >= 2 classes and >= 1 layer, got {num_classes}, {layers}")
        self.causal, self.window = bool(causal), window
        self.layers = nn.ModuleList(
            CoAttentionLayer(text_dim if i == 0 else dim, speech_dim if i == 0 else dim, dim, heads, dropout)
            for i in range(layers))
        self.out_dim = 2 * int(dim)
        self.ffn = PositionwiseFFN(self.out_dim, ffn_dim or self.out_dim, dropout)
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(self.out_dim, num_classes)

    def forward(self, text: torch.Tensor, speech: torch.Tensor, mask: torch.Tensor,
                speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = _check_turns(text, mask, "text")
        _check_turns(speech, mask, "speech")
        keep = mask[..., None]
        t, s = text.masked_fill(~keep, 0.0), speech.masked_fill(~keep, 0.0)
        allowed = turn_attention_mask(mask, kind="global", window=self.window, causal=self.causal)
        for layer in self.layers:
            t, s = layer(t, s, allowed)
            t, s = t.masked_fill(~keep, 0.0), s.masked_fill(~keep, 0.0)
        embedding = self.ffn(torch.cat([t, s], dim=-1)).masked_fill(~keep, 0.0)
        return self.classifier(self.dropout(embedding)), embedding

    def step(self, text: torch.Tensor, speech: torch.Tensor,
             state: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Online ERC, one turn (causal models only): text (text_dim,), speech (speech_dim,) -- the turn's stage II
        embeddings -> (logits (C,), embedding (2·dim,), state). Under causal masks every layer's output at a turn
        depends only on that layer's inputs up to it, so each layer caches its inputs and cross-attention outputs
        and computes the new row only; outputs equal :meth:`forward` on the whole dialogue (eval mode)."""
        t, s = _check_step(self, text, "text"), _check_step(self, speech, "speech")
        state = {} if state is None else state

        def push(key: str, row: torch.Tensor) -> torch.Tensor:
            state[key] = row if key not in state else torch.cat([state[key], row], dim=1)
            return state[key]

        for i, layer in enumerate(self.layers):
            t_past, s_past = push(f"{i}.text", t), push(f"{i}.speech", s)
            allowed = _last_row(t_past.shape[1], None, "global", self.window, t.device)
            t_cross = push(f"{i}.text_cross", layer.text_cross(t, s_past, allowed))
            s_cross = push(f"{i}.speech_cross", layer.speech_cross(s, t_past, allowed))
            t = layer.text_self(t_cross[:, -1:], t_cross, allowed)
            s = layer.speech_self(s_cross[:, -1:], s_cross, allowed)
        embedding = self.ffn(torch.cat([t, s], dim=-1))[0, 0]
        return self.classifier(self.dropout(embedding)), embedding, state


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
