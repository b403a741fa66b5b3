"""Every loss of the thesis, one implementation each, shared by CARE, SER, HCAM, MiSTER-E, ABHINAYA and S2S-ZEST.

Conventions (all losses):

* Classification: ``logits`` is ``(..., C)``, ``target`` is ``(...)`` of class indices (long).
  Regression: ``pred`` and ``target`` have the same shape.
* ``mask`` (optional) is a boolean tensor, True = a real element, False = padding. Its shape is the
  target's shape for the classification losses, and a prefix of ``pred.shape`` for the regression
  losses (``(B, T)`` for ``(B, T, D)`` frames). Classification losses also drop ``target == ignore_index``.
  Padded elements are selected out (classification, contrastive) or replaced through ``torch.where``
  (regression) before any arithmetic, so padding, even NaN/inf, never reaches the value or the gradient.
* ``reduction="mean"`` averages over the kept elements; with class weights ``w`` it is
  ``Σ_i w_{y_i} ℓ_i / Σ_i w_{y_i}`` (the convention of :func:`torch.nn.functional.cross_entropy`, so the
  overall scale of ``w`` does not matter). ``"sum"`` sums; ``"none"`` returns per-element losses shaped
  like ``target`` (zeros at padding). When nothing is kept, the result is 0 and still part of the graph.

Class weights of ABHINAYA: ``w_c = N / (N_c · C)`` (Eq. 4.28), :func:`class_weights`; this is
scikit-learn's ``class_weight="balanced"``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emotk.core.suggest import did_you_mean
from emotk.errors import ConfigError, DataError, UsageError

IGNORE_INDEX = -100
_REDUCTIONS = ("mean", "sum", "none")

CountsLike = Sequence[float] | torch.Tensor
WeightLike = Sequence[float] | torch.Tensor | str | None


# ------------------------------------------------------------------------------------------------ helpers


def _as_tensor(x: Any, like: torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=like.dtype if like.is_floating_point() else torch.float32, device=like.device)
    if t.dim() != 1:
        raise DataError(f"{name} must be a 1-D sequence, got shape {tuple(t.shape)}")
    return t


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got '{reduction}'")


def _keep_mask(target: torch.Tensor, mask: torch.Tensor | None, ignore_index: int | None) -> torch.Tensor:
    """Boolean ``(...)`` tensor: True where ``target`` is real (in ``mask`` and not ``ignore_index``)."""
    keep = torch.ones_like(target, dtype=torch.bool)
    if mask is not None:
        if tuple(mask.shape) != tuple(target.shape):
            raise DataError(f"mask shape {tuple(mask.shape)} does not match target shape {tuple(target.shape)}")
        keep = mask.to(device=target.device, dtype=torch.bool)
    if ignore_index is not None:
        keep = keep & (target != ignore_index)
    return keep


def _select_classification(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                           ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (logits ``(M, C)``, target ``(M,)``, keep ``(...)``) for the M kept elements."""
    if logits.dim() < 1 or tuple(logits.shape[:-1]) != tuple(target.shape):
        raise DataError(f"logits {tuple(logits.shape)} must be target shape {tuple(target.shape)} + (num_classes,)")
    if target.is_floating_point():
        raise DataError(f"target must hold class indices (integer dtype), got {target.dtype}")
    keep = _keep_mask(target, mask, ignore_index)
    z, t = logits[keep], target[keep].long()
    num_classes = logits.shape[-1]
    if t.numel() and bool(((t < 0) | (t >= num_classes)).any()):
        bad = t[(t < 0) | (t >= num_classes)][0].item()
        raise DataError(f"target class {bad} is outside [0, {num_classes}) (the logits have {num_classes} classes)")
    return z, t, keep


def _reduce(losses: torch.Tensor, weights: torch.Tensor | None, keep: torch.Tensor, reduction: str,
            anchor: torch.Tensor) -> torch.Tensor:
    """Reduce per-element ``losses`` ``(M,)`` (class weights ``weights`` ``(M,)`` or None) as documented above."""
    if reduction == "none":
        out = anchor.new_zeros(keep.shape, dtype=losses.dtype)
        out = out.masked_scatter(keep, losses * weights if weights is not None else losses)
        return out
    if losses.numel() == 0:  # nothing kept: a zero that is still part of the graph
        return anchor[..., :0].sum() * 0.0
    if weights is None:
        return losses.mean() if reduction == "mean" else losses.sum()
    total = (losses * weights).sum()
    if reduction == "sum":
        return total
    denom = weights.sum()
    return total / denom if bool(denom > 0) else total * 0.0


def _target_weights(weight: torch.Tensor | Sequence[float] | None, t: torch.Tensor,
                    logits: torch.Tensor) -> torch.Tensor | None:
    if weight is None:
        return None
    w = _as_tensor(weight, logits, "weight")
    if w.numel() != logits.shape[-1]:
        raise DataError(f"weight has {w.numel()} entries but the logits have {logits.shape[-1]} classes")
    return w[t]


def class_weights(counts: CountsLike) -> torch.Tensor:
    """Eq. 4.28: ``w_c = N / (N_c · C)`` for per-class training counts ``(C,)`` -> float32 ``(C,)``.

    A class with ``N_c = 0`` never occurs as a target, so its weight is set to 0 instead of infinity.
    """
    c = torch.as_tensor(counts, dtype=torch.float64)
    if c.dim() != 1 or c.numel() == 0:
        raise DataError(f"class counts must be a non-empty 1-D sequence, got shape {tuple(c.shape)}")
    if bool((c < 0).any()) or not bool(torch.isfinite(c).all()):
        raise DataError(f"class counts must be finite and >= 0, got {c.tolist()}")
    total = c.sum()
    if total <= 0:
        raise DataError("class counts sum to 0: no training examples were counted")
    w = torch.where(c > 0, total / (c.clamp(min=1e-12) * c.numel()), torch.zeros_like(c))
    return w.float()


# ----------------------------------------------------------------------------------------- classification


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                  weight: torch.Tensor | Sequence[float] | None = None, ignore_index: int | None = IGNORE_INDEX,
                  reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy. ``logits`` ``(..., C)``, ``target`` ``(...)`` long, ``mask`` ``(...)`` bool,
    ``weight`` ``(C,)`` optional class weights. Returns a scalar (or ``target``-shaped for ``"none"``)."""
    _check_reduction(reduction)
    z, t, keep = _select_classification(logits, target, mask, ignore_index)
    nll = -F.log_softmax(z, dim=-1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
    return _reduce(nll, _target_weights(weight, t, logits), keep, reduction, logits)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_counts: CountsLike,
                           mask: torch.Tensor | None = None, ignore_index: int | None = IGNORE_INDEX,
                           reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy weighted by :func:`class_weights` of the training ``class_counts`` ``(C,)`` (Eq. 4.28)."""
    return cross_entropy(logits, target, mask=mask, weight=class_weights(class_counts), ignore_index=ignore_index,
                         reduction=reduction)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               weight: torch.Tensor | Sequence[float] | None = None, mask: torch.Tensor | None = None,
               ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean") -> torch.Tensor:
    """Focal loss ``-(1 - p_t)^γ · log p_t`` (Lin et al.), optionally class-weighted (Eq. 4.29).

    ``logits`` ``(..., C)``, ``target`` ``(...)``; ``gamma = 0`` gives :func:`cross_entropy`.
    """
    _check_reduction(reduction)
    if gamma < 0:
        raise ConfigError(f"focal loss gamma must be >= 0, got {gamma}")
    z, t, keep = _select_classification(logits, target, mask, ignore_index)
    log_pt = F.log_softmax(z, dim=-1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
    if gamma == 0:
        losses = -log_pt
    else:
        # the floor keeps d/dp (1-p)^γ finite at p = 1 when γ < 1 (clamp's gradient is 0 there anyway)
        losses = -((1.0 - log_pt.exp()).clamp(min=torch.finfo(log_pt.dtype).tiny) ** gamma) * log_pt
    return _reduce(losses, _target_weights(weight, t, logits), keep, reduction, logits)


def weighted_focal_loss(logits: torch.Tensor, target: torch.Tensor, class_counts: CountsLike, gamma: float = 2.0,
                        mask: torch.Tensor | None = None, ignore_index: int | None = IGNORE_INDEX,
                        reduction: str = "mean") -> torch.Tensor:
    """Focal loss weighted by :func:`class_weights` of ``class_counts`` (Eq. 4.29; ABHINAYA S1/S2, γ = 2)."""
    return focal_loss(logits, target, gamma=gamma, weight=class_weights(class_counts), mask=mask,
                      ignore_index=ignore_index, reduction=reduction)


def vs_logits(logits: torch.Tensor, class_counts: CountsLike, gamma: float = 0.3, tau: float = 1.0) -> torch.Tensor:
    """Vector-scaling adjustment (Eq. 4.30): ``ẑ_c = (N_c/N_max)^γ · z_c + τ · log(N_c/N)``.

    ``logits`` ``(..., C)`` -> adjusted logits of the same shape; ``class_counts`` ``(C,)`` training counts,
    floored at 1 so that a class unseen in training keeps finite logits.
    """
    # float32 at least: counts such as 84,260 overflow float16
    n = torch.as_tensor(class_counts, dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32,
                        device=logits.device)
    if n.dim() != 1:
        raise DataError(f"class_counts must be a 1-D sequence, got shape {tuple(n.shape)}")
    if n.numel() != logits.shape[-1]:
        raise DataError(f"class_counts has {n.numel()} entries but the logits have {logits.shape[-1]} classes")
    if bool((n < 0).any()) or float(n.sum()) <= 0:
        raise DataError(f"class counts must be >= 0 and not all 0, got {n.tolist()}")
    n = n.clamp(min=1.0)
    scale = (n / n.max()) ** gamma
    offset = tau * torch.log(n / n.sum())
    return (scale * logits + offset).to(logits.dtype)


def vs_loss(logits: torch.Tensor, target: torch.Tensor, class_counts: CountsLike, gamma: float = 0.3,
            tau: float = 1.0, weight: WeightLike = "balanced", mask: torch.Tensor | None = None,
            ignore_index: int | None = IGNORE_INDEX, reduction: str = "mean") -> torch.Tensor:
    """VS loss (Kini et al.; Eq. 4.30–4.31): cross-entropy on :func:`vs_logits`, class-weighted.

    ``weight="balanced"`` (default) uses :func:`class_weights` of ``class_counts``; a ``(C,)`` tensor gives
    explicit weights, None none. With ``gamma = tau = 0`` this is :func:`weighted_cross_entropy`.
    """
    if isinstance(weight, str):
        if weight != "balanced":
            raise ConfigError(f"vs_loss weight must be 'balanced', a (C,) sequence or None, got '{weight}'")
        weight = class_weights(class_counts)
    return cross_entropy(vs_logits(logits, class_counts, gamma, tau), target, mask=mask, weight=weight,
                         ignore_index=ignore_index, reduction=reduction)


# ------------------------------------------------------------------------------------------- contrastive


def _supcon_per_anchor(z: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None,
                       temperature: float, include_anchor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Supervised contrastive loss of every anchor of L2-normalised ``z`` ``(M, D)``.

    Khosla et al. (``include_anchor=False``): positives of anchor i are the other samples with its label (and its
    group); the denominator runs over every other sample (of its group). ``include_anchor=True`` is HCAM's Eq. 4.7
    as printed: i is one of its own positives and a term of its denominator. Returns (losses ``(M,)``,
    has_positive ``(M,)`` bool).
    """
    m = z.shape[0]
    logits = z @ z.t() / temperature
    allowed = torch.ones(m, m, dtype=torch.bool, device=z.device)
    if not include_anchor:
        allowed = allowed & ~torch.eye(m, dtype=torch.bool, device=z.device)
    if groups is not None:
        allowed = allowed & (groups.unsqueeze(0) == groups.unsqueeze(1))
    positives = allowed & (labels.unsqueeze(0) == labels.unsqueeze(1))
    log_denominator = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    n_pos = positives.sum(dim=1)
    has_pos = n_pos > 0
    pos_sum = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    losses = -pos_sum / n_pos.clamp(min=1)
    return losses, has_pos


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"contrastive temperature must be > 0, got {temperature}")


SUPCON_FORMS = ("khosla", "printed")


def supervised_contrastive(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
                           mask: torch.Tensor | None = None, form: str = "khosla",
                           ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020; HCAM Eq. 4.7–4.8).

    ``features`` ``(N, D)`` (or ``(B, T, D)`` with ``labels``/``mask`` ``(B, T)``, flattened into one set: in a
    batch of dialogues, the anchors and their positives/negatives come from every dialogue of the batch),
    L2-normalised here, so their scale does not matter. ``labels`` ``(N,)`` class indices; ``mask`` ``(N,)``
    True = real; labels equal to ``ignore_index`` (-100) are left out as anchors, positives and negatives.

    ``form="khosla"`` (default): loss of anchor i is
    ``-1/|P(i)| Σ_{p∈P(i)} log(exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ))`` with P(i) the *other* samples of i's
    class; an anchor with no other sample of its class has no positive and is left out of the mean (its loss
    would be undefined). ``form="printed"``: Eq. 4.7 as the thesis prints it, i kept in P(i) and in the
    denominator (``a`` runs over all samples); then every anchor has a positive (itself) and all count.
    The result is the mean over the counted anchors (0, still in the graph, when none counts). Scalar.
    """
    _check_temperature(temperature)
    if form not in SUPCON_FORMS:
        raise ConfigError(f"supcon form {form!r} is not one of {', '.join(SUPCON_FORMS)}")
    if features.dim() < 2 or tuple(features.shape[:-1]) != tuple(labels.shape):
        raise DataError(f"features {tuple(features.shape)} must be labels shape {tuple(labels.shape)} + (dim,)")
    keep = _keep_mask(labels, mask, ignore_index)
    z = F.normalize(_upcast(features[keep]), dim=-1)
    losses, has_pos = _supcon_per_anchor(z, labels[keep], None, temperature, include_anchor=form == "printed")
    if not bool(has_pos.any()):
        return features[..., :0].sum() * 0.0
    return losses[has_pos].mean().to(features.dtype)


def ce_supcon(logits: torch.Tensor, target: torch.Tensor, features: torch.Tensor, beta: float = 0.5,
              temperature: float = 0.1, form: str = "khosla", mask: torch.Tensor | None = None,
              weight: torch.Tensor | Sequence[float] | None = None,
              ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """HCAM's training loss ``L = β·CE + (1 − β)·SupCon`` (every stage).

    ``logits`` ``(..., C)`` and ``features`` ``(..., D)`` (the stage's embedding) with ``target`` ``(...)`` (e.g.
    ``(B, T)`` turns of a batch of dialogues), ``mask`` ``(...)`` True = real; ``ignore_index`` targets are left out
    of both terms. CE is :func:`cross_entropy` (optional class ``weight``), SupCon is :func:`supervised_contrastive`
    with ``temperature`` τ and ``form``. β = 1 is plain cross-entropy, β = 0 plain SupCon. The thesis gives
    neither β nor τ: these defaults are placeholders until the ERC configs set values chosen on validation. Scalar.
    """
    if not 0.0 <= float(beta) <= 1.0:
        raise ConfigError(f"ce_supcon beta must be in [0, 1], got {beta}")
    if tuple(features.shape[:-1]) != tuple(target.shape):
        raise DataError(f"features {tuple(features.shape)} must be target shape {tuple(target.shape)} + (dim,)")
    ce = cross_entropy(logits, target, mask=mask, weight=weight, ignore_index=ignore_index)
    if beta == 1.0:
        return ce
    con = supervised_contrastive(features, target, temperature, mask=mask, form=form, ignore_index=ignore_index)
    return beta * ce + (1.0 - beta) * con.to(ce.dtype)


def supervised_contrastive_two_view(view_a: torch.Tensor, view_b: torch.Tensor, labels: torch.Tensor,
                                    mask: torch.Tensor | None = None, temperature: float = 0.07) -> torch.Tensor:
    """MiSTER-E's conversation-level supervised contrastive loss over 2N normalised states.

    ``view_a``, ``view_b`` ``(B, N, D)`` (or ``(N, D)`` for one conversation): two views of each utterance
    (the multimodal expert's speech- and text-side states); ``labels`` ``(B, N)``; ``mask`` ``(B, N)``
    True = real utterance. For each conversation, the 2·N_b real states form the set (each state's other
    view is always a positive); anchors and denominators never leave their conversation. The loss is
    averaged over the anchors of a conversation, then over the conversations. Scalar.
    """
    _check_temperature(temperature)
    if view_a.shape != view_b.shape:
        raise DataError(f"the two views differ in shape: {tuple(view_a.shape)} vs {tuple(view_b.shape)}")
    if view_a.dim() == 2:
        view_a, view_b, labels = view_a.unsqueeze(0), view_b.unsqueeze(0), labels.unsqueeze(0)
        mask = mask.unsqueeze(0) if mask is not None else None
    if view_a.dim() != 3 or tuple(view_a.shape[:2]) != tuple(labels.shape):
        raise DataError(f"views {tuple(view_a.shape)} must be (B, N, D) with labels (B, N), got labels "
                        f"{tuple(labels.shape)}")
    keep = _keep_mask(labels, mask, None)
    conv = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[keep]
    z = F.normalize(_upcast(torch.cat([view_a[keep], view_b[keep]], dim=0)), dim=-1)
    lab = torch.cat([labels[keep], labels[keep]])
    groups = torch.cat([conv, conv])
    losses, has_pos = _supcon_per_anchor(z, lab, groups, temperature)
    if not bool(has_pos.any()):
        return view_a[..., :0].sum() * 0.0
    n_conv = labels.shape[0]
    per_conv_sum = torch.zeros(n_conv, dtype=losses.dtype, device=losses.device).index_add(
        0, groups, torch.where(has_pos, losses, torch.zeros_like(losses)))
    per_conv_n = torch.zeros(n_conv, dtype=losses.dtype, device=losses.device).index_add(
        0, groups, has_pos.to(losses.dtype))
    present = per_conv_n > 0
    return (per_conv_sum[present] / per_conv_n[present]).mean().to(view_a.dtype)


def kl_consistency(p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor | None = None,
                   reduction: str = "mean") -> torch.Tensor:
    """Directional ``KL(p || q) = Σ_c p_c (log p_c - log q_c)``, ``p = softmax(p_logits)``, ``q = softmax(q_logits)``.

    ``p_logits``, ``q_logits`` ``(..., C)``; ``mask`` ``(...)`` True = real. Averaged over real elements.
    MiSTER-E uses ``α · [KL(p_m || p_s) + KL(p_m || p_t)]`` with p_m the multimodal expert's prediction;
    gradients reach both arguments (detach ``p_logits`` yourself to treat p as a fixed target).
    """
    _check_reduction(reduction)
    if p_logits.shape != q_logits.shape:
        raise DataError(f"KL inputs differ in shape: {tuple(p_logits.shape)} vs {tuple(q_logits.shape)}")
    lead = p_logits.shape[:-1]
    keep = _keep_mask(torch.zeros(lead, dtype=torch.long, device=p_logits.device), mask, None)
    log_p = F.log_softmax(p_logits[keep], dim=-1)
    log_q = F.log_softmax(q_logits[keep], dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return _reduce(kl, None, keep, reduction, p_logits)


# ----------------------------------------------------------------------------------------------- regression


def _regression_mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    if pred.shape != target.shape:
        raise DataError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if mask is None:
        return None
    if mask.dim() > pred.dim() or tuple(mask.shape) != tuple(pred.shape[: mask.dim()]):
        raise DataError(f"mask shape {tuple(mask.shape)} must be a prefix of the prediction shape {tuple(pred.shape)}")
    m = mask.to(device=pred.device, dtype=torch.bool)
    return m.reshape(tuple(m.shape) + (1,) * (pred.dim() - m.dim())).expand_as(pred)


def _masked_mean_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, reduction: str,
                       fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    _check_reduction(reduction)
    m = _regression_mask(pred, target, mask)
    if m is None:
        err = fn(pred - target)
        return err if reduction == "none" else err.mean() if reduction == "mean" else err.sum()
    err = fn(torch.where(m, pred - target, torch.zeros_like(pred)))
    if reduction == "none":
        return err
    total = err.sum()
    if reduction == "sum":
        return total
    n = m.sum()
    return total / n if bool(n > 0) else total * 0.0


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               reduction: str = "mean") -> torch.Tensor:
    """Mean squared error over real elements. ``pred``/``target`` ``(B, T, ...)``, ``mask`` ``(B, T)`` or any
    prefix of that shape, broadcast over the trailing dimensions (CARE Eq. 3.1–3.2, ZEST Eq. 5.6). Scalar."""
    return _masked_mean_error(pred, target, mask, reduction, torch.square)


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error over real elements; shapes as :func:`masked_mse` (ZEST F0 loss, Eq. 5.4). Scalar."""
    return _masked_mean_error(pred, target, mask, reduction, torch.abs)


def ccc(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Concordance correlation coefficient (Eq. 3.5), ``2·cov / (σ_p² + σ_t² + (μ_p - μ_t)²)``.

    ``pred``/``target`` ``(N,)`` -> scalar; ``(..., D)`` -> ``(D,)``, one CCC per dimension over all leading
    positions. ``mask`` is ``pred.shape`` or ``pred.shape[:-1]`` (True = real). Population (biased) moments;
    ``eps`` keeps two identical constant series finite (CCC 0 instead of NaN).
    """
    if pred.shape != target.shape:
        raise DataError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    p = pred.reshape(-1, 1) if pred.dim() <= 1 else pred.reshape(-1, pred.shape[-1])
    t = target.reshape(-1, 1) if pred.dim() <= 1 else target.reshape(-1, pred.shape[-1])
    if mask is None:
        w = torch.ones_like(p, dtype=torch.bool)
    else:
        if tuple(mask.shape) == tuple(pred.shape):
            w = mask.to(device=pred.device, dtype=torch.bool).reshape(p.shape)
        elif pred.dim() >= 2 and tuple(mask.shape) == tuple(pred.shape[:-1]):
            w = mask.to(device=pred.device, dtype=torch.bool).reshape(-1, 1).expand_as(p)
        else:
            raise DataError(f"mask shape {tuple(mask.shape)} must be {tuple(pred.shape)} or {tuple(pred.shape[:-1])}")
    zero = torch.zeros_like(p)
    p, t = torch.where(w, p, zero), torch.where(w, t, zero)
    wf = w.to(p.dtype)
    n = wf.sum(dim=0).clamp(min=1.0)
    mu_p, mu_t = p.sum(dim=0) / n, t.sum(dim=0) / n
    dp, dt = (p - mu_p) * wf, (t - mu_t) * wf
    var_p, var_t = (dp * dp).sum(dim=0) / n, (dt * dt).sum(dim=0) / n
    cov = (dp * dt).sum(dim=0) / n
    out = 2.0 * cov / (var_p + var_t + (mu_p - mu_t) ** 2 + eps)
    return out.squeeze(0) if pred.dim() <= 1 else out


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - CCC`` per dimension, averaged over dimensions (VAD regression objective). Shapes as :func:`ccc`. Scalar."""
    return (1.0 - ccc(pred, target, mask)).mean()


# ------------------------------------------------------------------------------------------------- registry

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": cross_entropy,
    "wce": weighted_cross_entropy,
    "focal": focal_loss,
    "wfocal": weighted_focal_loss,
    "vs": vs_loss,
    "ccc": ccc_loss,
    "mse": masked_mse,
    "l1": masked_l1,
    "supcon": supervised_contrastive,
    "ce_supcon": ce_supcon,
    "kl": kl_consistency,
}
# Arguments that come from the batch, never from a config.
_CALL_ARGS = {"logits", "target", "pred", "features", "labels", "p_logits", "q_logits", "mask"}


class Loss(nn.Module):
    """A named loss with its configured keyword arguments: ``loss(input, target, mask=None, **batch) -> Tensor``.

    ``batch`` carries further per-batch tensors a loss takes, e.g. ``features=`` (the embeddings) for ``ce_supcon``;
    a batch tensor the loss does not use (``features=`` given to ``ce``) is dropped, so a task can pass the same
    tensors whatever loss the config names. ``batch_args`` lists the ones this loss uses.
    """

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.name, self.fn, self.kwargs = name, fn, dict(kwargs)
        params = inspect.signature(fn).parameters
        self.batch_args = tuple(p for p in list(params)[2:] if p in _CALL_ARGS and p != "mask")
        self._needed = [p for p in self.batch_args if params[p].default is inspect.Parameter.empty]

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                **batch: torch.Tensor) -> torch.Tensor:
        unknown = sorted(set(batch) - _CALL_ARGS)
        if unknown:
            hint = did_you_mean(unknown[0], _CALL_ARGS)
            raise UsageError(f"loss '{self.name}': unknown batch argument '{unknown[0]}'{hint}")
        batch = {k: v for k, v in batch.items() if k in self.batch_args}
        needed = [p for p in self._needed if p not in batch]
        if needed:
            raise UsageError(f"loss '{self.name}' needs {', '.join(needed)}= from the batch (e.g. the embeddings)")
        return self.fn(input, target, mask=mask, **batch, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join([repr(self.name)] + [f"{k}={v!r}" for k, v in sorted(self.kwargs.items())])


def build_loss(name: str, **kwargs: Any) -> Loss:
    """Loss from a config name (``ce wce focal wfocal vs ccc mse l1 supcon ce_supcon kl``) and its keyword arguments.

    ``wce``, ``wfocal`` and ``vs`` need ``class_counts``. Unknown names or arguments raise ConfigError
    with a suggestion. The returned module is called as ``loss(input, target, mask=None)``.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'{did_you_mean(name, LOSSES)} (known: {', '.join(LOSSES)})")
    fn = LOSSES[name]
    params = inspect.signature(fn).parameters
    allowed = [p for p in params if p not in _CALL_ARGS]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(f"loss '{name}' has no argument '{key}'{did_you_mean(key, allowed)} "
                              f"(it takes: {', '.join(allowed)})")
    missing = [p for p, spec in params.items()
               if p not in _CALL_ARGS and spec.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise ConfigError(f"loss '{name}' needs {', '.join(missing)} (e.g. the per-class training counts)")
    return Loss(name, fn, kwargs)
