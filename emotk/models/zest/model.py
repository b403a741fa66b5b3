"""S2S-ZEST analysis models (METHODS.md §6).

:class:`AnalysisModel` = emotion encoder + F0 predictor + duration predictor, trained jointly with
L = lambda_e (CE_emo + CE_spk through the GRL) + lambda_f L1(F0) + lambda_d MSE(d) (thesis Eq. 5.7), and the
builders of the two stages' networks. The building blocks stay one module each: :mod:`.speaker`
(SpeakerEncoder, x-vector front-end), :mod:`.emotion` (EmotionEncoder, HuBERT upstream), :mod:`.f0_predictor`,
:mod:`.duration`.
"""

from __future__ import annotations

from typing import Any

import torch


def build_speaker_model(cfg: Any, xvector_dim: int, num_speakers: int, num_emotions: int):
    """The :class:`SpeakerEncoder` of ``cfg.speaker``."""
    from emotk.models.zest.speaker import SpeakerEncoder

    s = cfg.speaker
    return SpeakerEncoder(xvector_dim, num_speakers, num_emotions, hidden=s.hidden, dim=s.dim, dropout=s.dropout,
                          adv_weight=s.adv_weight)


def build_analysis_model(cfg: Any, num_tokens: int, num_speakers: int, num_emotions: int,
                         hf_config: dict | None = None, normalize: bool | None = None, device: str = "cpu"):
    """The :class:`AnalysisModel` of ``cfg``: pretrained HuBERT from the hub, or (``hf_config``) a model of
    that shape with random weights (to load a bundle into). Returns (model, upstream description)."""
    from emotk.models.zest.emotion import build_upstream

    e = cfg.emotion
    up, desc = build_upstream(e.upstream, e.upstream_path, hf_config=hf_config, normalize=normalize,
                              freeze_cnn=e.freeze_cnn, device=device)
    return AnalysisModel(cfg, up, num_tokens, num_speakers, num_emotions), desc


class AnalysisModel(torch.nn.Module):
    """Emotion encoder + F0 predictor + duration predictor (one module, one checkpoint).

    forward(batch) -> dict with the emotion encoder outputs, ``f0`` (B, T) raw predictions and ``durations``
    (B, U) raw predictions; :meth:`losses` turns them into the joint loss.
    """

    def __init__(self, cfg: Any, upstream: Any, num_tokens: int, num_speakers: int, num_emotions: int) -> None:
        super().__init__()
        from emotk.models.zest.duration import DurationPredictor
        from emotk.models.zest.emotion import EmotionEncoder
        from emotk.models.zest.f0_predictor import F0Predictor

        e, f, du = cfg.emotion, cfg.f0_predictor, cfg.duration
        self.emotion = EmotionEncoder(upstream, num_emotions, num_speakers, dim=e.dim, kernel=e.kernel,
                                      layers=e.layers, adv_weight=e.adv_weight)
        self.f0_predictor = F0Predictor(num_tokens, cond_dim=e.dim, hidden=f.hidden, heads=f.heads, kernel=f.kernel,
                                        positional=f.positional, target=f.target, scale=f.scale)
        self.duration_predictor = DurationPredictor(num_tokens, speaker_dim=cfg.speaker.dim, emotion_dim=e.dim,
                                                    hidden=du.hidden, kernel=du.kernel, layers=du.layers,
                                                    dropout=du.dropout, target=du.target)
        self.weights = (cfg.loss.emotion, cfg.loss.f0, cfg.loss.duration)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        emo = self.emotion(batch["wav"], batch["wav_lengths"], batch["frames"])
        mask = emo["mask"]
        s = batch["speaker_embedding"]
        cond = s[:, None, :] + emo["emotion_frames"]
        f0 = self.f0_predictor(batch["tokens"], mask, cond, mask)
        dur = self.duration_predictor(batch["units"], batch["unit_mask"], s, emo["emotion_embedding"])
        return {**emo, "f0": f0, "durations": dur}

    def losses(self, out: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        """Joint loss and its parts: L1 on F0 in Hz over valid frames (unvoiced zeros included), MSE on the
        duration target over valid units, CE on emotion and on the GRL speaker adversary."""
        import torch.nn.functional as F

        from emotk.losses import masked_l1, masked_mse

        ce_emo = F.cross_entropy(out["emotion_logits"], batch["emotion"])
        ce_spk = F.cross_entropy(out["speaker_logits"], batch["speaker"])
        f0_hz = self.f0_predictor.to_hz(out["f0"])
        l_f0 = masked_l1(f0_hz, batch["f0"], out["mask"])
        target = self.duration_predictor.encode_target(batch["durations"])
        l_dur = masked_mse(out["durations"], target, batch["unit_mask"])
        we, wf, wd = self.weights
        loss = we * (ce_emo + ce_spk) + wf * l_f0 + wd * l_dur
        return {"loss": loss, "ce_emotion": ce_emo.detach(), "ce_speaker_adv": ce_spk.detach(),
                "f0_l1": l_f0.detach(), "duration_mse": l_dur.detach()}


