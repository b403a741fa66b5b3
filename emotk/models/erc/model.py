"""The HCAM stage networks as trained by ``emotk erc train`` (thesis §4.1.2; the layers live in :mod:`emotk.nn.hcam`).

:class:`ErcNet` is the one module a run trains and exports. It takes a batch of dialogues -- per-modality turn
vectors ``features[m]`` (B, T, D_m), the turn mask (B, T) and speakers (B, T) -- and returns per-turn
``(logits (B, T, C), embedding (B, T, E))``; the embedding is what the supervised contrastive loss pulls together
and what the next stage reads. By ``model.stage``:

1. :class:`UtteranceClassifier`: each turn alone (no context) -- input dropout -> Linear -> ReLU -> dropout ->
   Linear, the classifier of frozen stage-I vectors (sentence-encoder means, pooled SSL layers, lld functionals);
2. :func:`emotk.nn.hcam.build_context`: one modality in context -- thesis (bi-GRU -> self-attention -> FFN) or the
   authors' reference (four masked GRU + attention branches with a linear skip);
3. :class:`emotk.nn.hcam.HcamFusion`: co-attention fusion of the text and speech turn embeddings (of frozen stage II
   runs, ``embed.*.from_run``; or, ``model.joint``, of two stage II networks trained together with it from stage-I
   vectors: the joint II+III ablation of thesis Table 4.2).

``model.context: causal`` builds every stage so that a turn's output depends only on turns up to it (online ERC).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn

from emotk.errors import ConfigError, UsageError


@dataclass
class ErcDims:
    """What the network is built for (probed from the stage-I vectors and the labels, never hand-written)."""

    inputs: dict[str, int]  # modality -> vector width D_m
    num_classes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UtteranceClassifier(nn.Module):
    """Stage I on frozen vectors: (B, T, D) -> per-turn (logits (B, T, C), embedding (B, T, hidden)); turns are
    independent (no context), padded turns give zero embeddings."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.1,
                 input_dropout: float = 0.0) -> None:
        super().__init__()
        if hidden < 1 or num_classes < 2:
            raise ConfigError(f"stage I needs hidden >= 1 and >= 2 classes, got {hidden}, {num_classes}")
        self.out_dim = int(hidden)
        self.body = nn.Sequential(nn.Dropout(input_dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                                  nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        keep = mask.to(device=x.device, dtype=torch.bool)[..., None]
        embedding = self.body(x.masked_fill(~keep, 0.0)).masked_fill(~keep, 0.0)
        return self.classifier(embedding), embedding


def _context(m: Mapping[str, Any], in_dim: int, num_classes: int, causal: bool) -> nn.Module:
    """A stage II context network from the ``model`` section (thesis or reference by ``compat``)."""
    from emotk.nn.hcam import build_context

    options = dict(gru_hidden=m["gru_hidden"], gru_layers=m["gru_layers"], attention_dim=m["attention_dim"],
                   heads=m["heads"], causal=causal, dropout=m["dropout"])
    if m.get("compat", "thesis") == "thesis":
        options["window"] = m.get("window")
    return build_context(m.get("compat", "thesis"), in_dim, num_classes, **options)


class ErcNet(nn.Module):
    """One HCAM stage over a batch of dialogues (see the module docstring).

    dims: input widths per modality and the class count; model: the ``model`` section of an ErcConfig (or its dict
    in an export). forward(features {m: (B, T, D_m)}, mask (B, T) bool, speaker (B, T) long) -> (logits, embedding).
    """

    def __init__(self, dims: ErcDims, model: Any) -> None:
        super().__init__()
        m = model if isinstance(model, Mapping) else vars(model)
        self.dims = dims
        self.stage = int(m["stage"])
        self.modalities = list(m["modalities"])
        missing = [x for x in self.modalities if x not in dims.inputs]
        if missing:
            raise UsageError(f"ErcNet: no input width for modality '{missing[0]}'")
        causal = m.get("context", "full") == "causal"
        c = dims.num_classes
        if self.stage == 1:
            (mod,) = self.modalities
            self.net: nn.Module = UtteranceClassifier(dims.inputs[mod], c, hidden=m["hidden"], dropout=m["dropout"],
                                                      input_dropout=m.get("input_dropout", 0.0))
        elif self.stage == 2:
            (mod,) = self.modalities
            self.input_dropout = nn.Dropout(m.get("input_dropout", 0.0))
            self.net = _context(m, dims.inputs[mod], c, causal)
        elif self.stage == 3:
            from emotk.nn.hcam import HcamFusion

            self.input_dropout = nn.Dropout(m.get("input_dropout", 0.0))
            inputs = dict(dims.inputs)
            self.joint = bool(m.get("joint", False))
            if self.joint:  # Table 4.2's ablation: stage II of both modalities trained together with stage III
                self.context = nn.ModuleDict({x: _context(m, dims.inputs[x], c, causal) for x in ("text", "speech")})
                inputs = {x: int(net.out_dim) for x, net in self.context.items()}
            self.net = HcamFusion(inputs["text"], inputs["speech"], c, dim=m["fusion_dim"],
                                  heads=m["fusion_heads"], layers=m["fusion_layers"], window=m.get("window"),
                                  causal=causal, dropout=m["dropout"])
        else:
            raise ConfigError(f"model.stage: expected 1, 2 or 3, got {self.stage}")
        self.out_dim = int(self.net.out_dim)

    def step(self, features: Mapping[str, torch.Tensor], speaker: int,
             state: Any = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Online ERC, one turn of one dialogue (causal models; eval mode): ``features`` {m: (D_m,)} and the turn's
        speaker index -> (logits (C,), embedding, state); start a dialogue with ``state=None``. Equal to
        :meth:`forward` on the whole dialogue, at O(t) per turn (cached recurrent state and past attention rows)."""
        if self.stage == 1:
            x = features[self.modalities[0]][None, None]
            logits, embedding = self.net(x, torch.ones(1, 1, dtype=torch.bool, device=x.device))
            return logits[0, 0], embedding[0, 0], None
        if self.stage == 2:
            return self.net.step(features[self.modalities[0]], speaker, state)
        if getattr(self, "joint", False):
            state = state or {"text": None, "speech": None, "fusion": None}
            emb = {}
            for x in ("text", "speech"):
                _, emb[x], state[x] = self.context[x].step(features[x], speaker, state[x])
            logits, embedding, state["fusion"] = self.net.step(emb["text"], emb["speech"], state["fusion"])
            return logits, embedding, state
        return self.net.step(features["text"], features["speech"], state)

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor,
                speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stage == 1:
            return self.net(features[self.modalities[0]], mask, speaker)
        if self.stage == 2:
            return self.net(self.input_dropout(features[self.modalities[0]]), mask, speaker)
        text, speech = self.input_dropout(features["text"]), self.input_dropout(features["speech"])
        if getattr(self, "joint", False):
            text = self.context["text"](text, mask, speaker)[1]
            speech = self.context["speech"](speech, mask, speaker)[1]
        return self.net(text, speech, mask, speaker)
