"""Numerical parity of emotk's emotion2vec (emotk.features.encoders.emotion2vec) with FunASR's ``Emotion2vec`` class.

Evidence, not a CI test: it needs ``funasr`` (and its omegaconf), which emotk does not depend on, so run it from a
scratch virtual environment outside the repository (the constraints file keeps pip on the CPU torch wheel):

    python3 -m venv /tmp/funasr-venv
    /tmp/funasr-venv/bin/pip install -c requirements/cpu.txt torch==2.13.0 funasr
    PYTHONPATH=. /tmp/funasr-venv/bin/python benchmarks/emotion2vec_parity.py [--configs tiny,variant,base]

For each config: FunASR's class is built with random weights (every parameter perturbed, ALiBi scales drawn in
[0.3, 1.5], so no weight sits at its neutral initial value), saved in FunASR's layout (``model.pt`` = its state
dict, decoder and 9-class head included; ``config.yaml``) and in fairseq's (``{"cfg": omegaconf DictConfig,
"model": ...}``), and each file is loaded with emotk's ``load_emotion2vec``. Random waveforms of several lengths go
through (a) FunASR's ``inference(..., granularity="utterance")`` (what ``AutoModel.generate`` runs), (b) its
``extract_features`` after the same waveform layer norm (frame features), and (c) emotk's model, one utterance at a
time and all in one padded batch. Prints one JSON object (also written to benchmarks/results/emotion2vec_parity.json)
with the largest absolute differences of frame features and utterance embeddings.

Configs: ``tiny`` (emotk's tiny-emotion2vec sizes), ``variant`` (the branches emotion2vec does not use: group-norm
extractor, pre-norm blocks + final norm, pre-LN positional stack with an even kernel, ALiBi on 2 of 3 heads with
per-layer scales, no extra tokens), ``base`` (emotion2vec+ base's published config.yaml: 768-d, 4 + 8 blocks,
12 heads, 10 extra tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# emotion2vec+ base's config.yaml (FunASR model zoo / funasr/models/emotion2vec/template.yaml): model_conf.
BASE_MODEL_CONF = {
    "loss_beta": 0.0, "loss_scale": None, "depth": 8, "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0,
    "num_heads": 12, "norm_eps": 1e-05, "norm_affine": True, "encoder_dropout": 0.1, "post_mlp_drop": 0.1,
    "attention_dropout": 0.1, "activation_dropout": 0.0, "dropout_input": 0.0, "layerdrop": 0.05, "embed_dim": 768,
    "mlp_ratio": 4.0, "layer_norm_first": False, "average_top_k_layers": 8, "end_of_block_targets": False,
    "clone_batch": 8, "extractor_mode": "layer_norm", "normalize": True,
    "modalities": {"audio": {
        "type": "AUDIO", "prenet_depth": 4, "prenet_layerdrop": 0.05, "prenet_dropout": 0.1,
        "start_drop_path_rate": 0.0, "end_drop_path_rate": 0.0, "num_extra_tokens": 10, "init_extra_token_zero": True,
        "mask_noise_std": 0.01, "mask_prob_min": None, "mask_prob": 0.5, "inverse_mask": False,
        "mask_prob_adjust": 0.05, "keep_masked_pct": 0.0, "mask_length": 5, "add_masks": False,
        "remove_masks": False, "mask_dropout": 0.0, "encoder_zero_mask": True, "mask_channel_prob": 0.0,
        "mask_channel_length": 64, "ema_local_encoder": False, "local_grad_mult": 1.0, "use_alibi_encoder": True,
        "alibi_scale": 1.0, "learned_alibi": False, "alibi_max_pos": None, "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True, "learned_alibi_scale_per_layer": False, "num_alibi_heads": 12,
        "model_depth": 8,
        "decoder": {"decoder_dim": 384, "decoder_groups": 16, "decoder_kernel": 7, "decoder_layers": 4,
                    "input_dropout": 0.1, "add_positions_masked": False, "add_positions_all": False,
                    "decoder_residual": True, "projection_layers": 1, "projection_ratio": 2.0},
        "extractor_mode": "layer_norm",
        "feature_encoder_spec": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
        "conv_pos_width": 95, "conv_pos_groups": 16, "conv_pos_depth": 5, "conv_pos_pre_ln": False}},
}
VARIANT = dict(embed_dim=24, depth=2, prenet_depth=1, num_heads=3, mlp_ratio=2.0, layer_norm_first=True,
               conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2, extractor_mode="default",
               pos_conv_kernel=4, pos_conv_depth=2, pos_conv_groups=3, pos_conv_pre_norm=True, num_extra_tokens=0,
               num_alibi_heads=2, alibi_scale_per_layer=True, norm_eps=1e-6)
LENGTHS = (400, 7999, 16000, 35117)  # samples: the shortest input with one frame, and three others


def model_conf(name: str) -> dict:
    """FunASR ``model_conf`` of a parity config."""
    from emotk.features.encoders.emotion2vec import Emotion2vecConfig
    from emotk.hub.tiny import EMOTION2VEC_TINY

    if name == "base":
        return json.loads(json.dumps(BASE_MODEL_CONF))
    return Emotion2vecConfig(**(EMOTION2VEC_TINY if name == "tiny" else VARIANT)).to_funasr_conf()


def build_reference(conf: dict, seed: int, vocab_size: int):
    """FunASR's Emotion2vec with every parameter perturbed (eval mode)."""
    import torch
    from funasr.models.emotion2vec.model import Emotion2vec

    torch.manual_seed(seed)
    ref = Emotion2vec(model_conf=conf, vocab_size=vocab_size).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("alibi_scale"):
                p.uniform_(0.3, 1.5)
            else:
                p.add_(0.05 * torch.randn_like(p))
    return ref


def write_layouts(ref, conf: dict, folder: Path) -> dict[str, Path]:
    """Save ``ref`` as a FunASR folder and as a fairseq checkpoint (omegaconf cfg pickled inside)."""
    import torch
    import yaml
    from omegaconf import OmegaConf

    funasr_dir = folder / "funasr"
    funasr_dir.mkdir(parents=True)
    torch.save(ref.state_dict(), funasr_dir / "model.pt")
    (funasr_dir / "config.yaml").write_text(yaml.safe_dump({"model": "Emotion2vec", "model_conf": conf}))
    fairseq_conf = {k: v for k, v in conf.items() if k != "normalize"}
    cfg = OmegaConf.create({"_name": None, "common": {"seed": 1}, "model": {"_name": "data2vec_multi", **fairseq_conf},
                            "task": {"_name": "audio_pretraining", "normalize": conf["normalize"]}})
    fairseq_file = folder / "emotion2vec_base.pt"
    torch.save({"args": None, "cfg": cfg, "model": ref.state_dict(), "optimizer_history": [], "extra_state": {}},
               fairseq_file)
    return {"funasr": funasr_dir, "fairseq": fairseq_file}


def reference_outputs(ref, waves, normalize: bool) -> list[dict]:
    """Per waveform: FunASR's frame features (extract_features) and utterance embedding (inference)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    out = []
    for i, w in enumerate(waves):
        with torch.no_grad():
            src = F.layer_norm(w, w.shape) if normalize else w
            frames = ref.extract_features(src.view(1, -1), padding_mask=None)["x"][0].numpy()
            results, _ = ref.inference([w.numpy()], key=[f"utt{i}"], device="cpu", granularity="utterance")
        out.append({"frames": frames, "utterance": np.asarray(results[0]["feats"])})
    return out


def compare(model, waves, reference) -> dict:
    """Largest absolute differences of emotk's outputs from FunASR's (one at a time and in one padded batch)."""
    import numpy as np
    import torch

    lengths = [w.numel() for w in waves]
    batch = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    with torch.no_grad():
        batched = model(batch, lengths)
        batched_emb = model.embed(batch, lengths).numpy()
        singles = [model(w[None]) for w in waves]
    frames, single_utt, batch_frames, batch_utt, cosines, scale = [], [], [], [], [], []
    for i, (ref, one) in enumerate(zip(reference, singles)):
        f = one.frames[0].numpy()
        if f.shape != ref["frames"].shape:
            raise SystemExit(f"frame shapes differ for {lengths[i]} samples: emotk {f.shape}, "
                             f"FunASR {ref['frames'].shape}")
        n = int(batched.lengths[i])
        frames.append(float(np.abs(f - ref["frames"]).max()))
        single_utt.append(float(np.abs(f.mean(0) - ref["utterance"]).max()))
        batch_frames.append(float(np.abs(batched.frames[i, :n].numpy() - ref["frames"]).max()))
        batch_utt.append(float(np.abs(batched_emb[i] - ref["utterance"]).max()))
        u, v = batched_emb[i].astype(np.float64), ref["utterance"].astype(np.float64)
        cosines.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
        scale.append(float(np.abs(ref["frames"]).max()))
    return {"frames_max_abs_diff": max(frames), "utterance_max_abs_diff": max(single_utt),
            "batched_frames_max_abs_diff": max(batch_frames), "batched_utterance_max_abs_diff": max(batch_utt),
            "min_cosine_utterance": min(cosines), "max_abs_reference_frame_value": max(scale),
            "frames_max_abs_diff_by_length": dict(zip(map(str, lengths), frames))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tiny,variant,base", help="comma-separated: tiny, variant, base")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "emotion2vec_parity.json")
    args = ap.parse_args()
    try:
        import funasr
        from funasr.models.emotion2vec.model import Emotion2vec  # noqa: F401 (the class compared against)
    except Exception as err:  # funasr missing, or it fails to import with this torch
        print(f"emotion2vec_parity: funasr is not importable ({type(err).__name__}: {err}); install it in a scratch "
              "venv (see this script's docstring) and run it there", file=sys.stderr)
        return 0
    import numpy as np
    import torch

    from emotk.hub.emotion2vec import load_emotion2vec

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed + 1)
    t = torch.arange(max(LENGTHS)) / 16000.0
    waves = [(0.1 * torch.randn(n, generator=g) + 0.3 * torch.sin(2 * torch.pi * 180.0 * t[:n])).float()
             for n in LENGTHS]
    result: dict = {"funasr_version": funasr.__version__, "torch_version": torch.__version__,
                    "numpy_version": np.__version__, "python": platform.python_version(), "seed": args.seed,
                    "lengths_samples": list(LENGTHS), "threads": args.threads, "configs": {}}
    t0 = time.perf_counter()
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        print(f"[{name}] building FunASR's Emotion2vec", file=sys.stderr)
        conf = model_conf(name)
        ref = build_reference(conf, args.seed, vocab_size=9)
        reference = reference_outputs(ref, waves, bool(conf["normalize"]))
        entry: dict = {"parameters": int(sum(p.numel() for p in ref.parameters())), "layouts": {}}
        with tempfile.TemporaryDirectory(prefix="e2v-parity-") as tmp:
            for layout, path in write_layouts(ref, conf, Path(tmp)).items():
                model = load_emotion2vec(path)
                entry["layouts"][layout] = {"loaded_as": model.checkpoint_layout, **compare(model, waves, reference)}
                print(f"[{name}] {layout}: frames {entry['layouts'][layout]['frames_max_abs_diff']:.2e}, utterance "
                      f"{entry['layouts'][layout]['utterance_max_abs_diff']:.2e}", file=sys.stderr)
        entry["emotk_config"] = model.config.to_dict()
        result["configs"][name] = entry
    result["max_abs_diff"] = max(v for c in result["configs"].values() for lay in c["layouts"].values()
                                 for k, v in lay.items() if k.endswith("max_abs_diff"))
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
