"""``emotk demo``: run the pipeline on the built-in demo corpus (:mod:`emotk.demo`) and print summary tables."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emotk.cli.common import ConfigOpt, OverwriteOpt, SetOpt, emit


def demo(
    out: Path = typer.Option(Path("emotk-demo"), "--out", "-o", help="Run directory for the demo."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    corpus: Optional[Path] = typer.Option(None, "--corpus",
                                          help="Reuse/build the demo corpus here (default: inside the run dir)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Synthesise the demo corpus (offline), validate, split by speaker, measure per-style prosody, train SER;
    print a summary."""
    from emotk.cli.common import resolve_config as resolve
    from emotk.demo import run_demo
    from emotk.recipes import configs_dir, task_spec

    spec = task_spec("demo")
    default_file = configs_dir() / f"{spec.recipe}.yaml"
    resolved = resolve(spec.schema_class(), spec.name, config or (default_file if default_file.is_file() else None),
                       set_ or [])
    summary = run_demo(resolved, out, overwrite=overwrite, corpus_dir=corpus)
    emit(summary, _human)


def _num(value: object, spec: str) -> str:
    """``value`` formatted with ``spec``; "–" when it is None (e.g. a style with no voiced output)."""
    return "–" if value is None else format(value, spec)


def _human(s: dict) -> None:
    from emotk.cli.common import table

    st = s["stages"]
    c = st["corpus"]
    rows = [["corpus", f"{c.get('utterances')} utterances, {c.get('speakers')} speakers, {c.get('hours')} h",
             f"{c['seconds']} s"]]
    if "validate" in st:
        v = st["validate"]
        rows.append(["validate", f"{'ok' if v['ok'] else 'FAILED'}: {v['errors']} errors, {v['warnings']} warnings",
                     f"{v['seconds']} s"])
    if "split" in st:
        sp = st["split"]
        first = next(iter(sp["folds"].values()))
        rows.append(["split", f"{len(sp['folds'])} speaker folds (fold 1: "
                     + ", ".join(f"{k} {n}" for k, n in first.items())
                     + f"), sha256 {sp['protocol_sha256'][:12]}", f"{sp['seconds']} s"])
    table("emotk demo", ["stage", "result", "time"], rows)
    if "prosody" in st:
        p = st["prosody"]["per_style"]
        table("per-style prosody (demo corpus)", ["style", "mean F0 (Hz)", "F0 range (st)", "words/s", "level (dBFS)"],
              [[k, v["mean_f0_hz"], v["f0_range_semitones"], v["words_per_s"], v["level_dbfs"]] for k, v in p.items()])
    if "ser" in st:
        ser = st["ser"]
        strong = ser.get("strong")

        def pct(block: dict, k: str) -> str:
            v = block["test"][k]
            return f"{v['mean'] * 100:.1f} ± {v['std'] * 100:.1f}"

        table(f"speech emotion recognition on the demo corpus ({ser['upstream']}, {ser['folds']} speaker folds, "
              "test mean ± std)", ["metric", "thesis recipe %", *(["strong recipe %"] if strong else [])],
              [[k, pct(ser, k), *([pct(strong, k)] if strong else [])] for k in ser["test"]])
        typer.echo(f"SER recipes: thesis = {ser['config']}"
                   + (f", strong = {strong['config']} (emotk's: mean+std statistics, dropout, weight decay, early "
                      "stopping, lr chosen on validation)" if strong else ""))
    if "erc" in st:
        erc = st["erc"]
        d = erc["dialogues"]
        table(f"emotion recognition in conversations on the demo dialogues (HCAM; {d['train']} train / {d['valid']} "
              f"valid / {d['test']} test dialogues, {erc['turns']} turns)", ["model", "test weighted F1 %",
                                                                          "test macro F1 %"],
              [[f"{name} (stage {erc[name]['stage']})", f"{erc[name]['test']['weighted_f1'] * 100:.1f}",
                f"{erc[name]['test']['macro_f1'] * 100:.1f}"] for name in ("text", "speech", "fusion")])
    if "care" in st:
        care = st["care"]
        pre = care["pretrain"]

        def cell(name: str, metric: str) -> str:
            v = care[name]["test"][metric]
            return f"{v['mean'] * 100:.1f} ± {v['std'] * 100:.1f}"

        title = (f"CARE pre-training on the demo corpus ({pre['steps']} steps; semantic loss "
                 f"{pre['semantic_loss']['first']:.3f} -> {pre['semantic_loss']['last']:.3f}, acoustic "
                 f"{pre['acoustic_loss']['first']:.3f} -> {pre['acoustic_loss']['last']:.3f}): SER test mean ± std (%)")
        table(title, ["upstream", "weighted_f1", "balanced_accuracy"],
              [[label, cell(name, "weighted_f1"), cell(name, "balanced_accuracy")]
               for name, label in (("care", "tiny CARE"), ("untrained", "same architecture, untrained"))])
    if "zest" in st:
        z = st["zest"]
        per = z["settings"]["SSST"]["per_target"]
        table(f"S2S-ZEST emotion transfer on held-out sentences ({z['conversions']} WORLD conversions; mean log-F0 "
              "of the output minus the model's reconstruction of the source, by target style)",
              ["target", "SSST shift", "DSST shift", "reference log-F0"],
              [[t, _num(per[t].get("shift_vs_reconstruction"), "+.3f"),
                _num(z["settings"]["DSST"]["per_target"].get(t, {}).get("shift_vs_reconstruction"), "+.3f"),
                _num(per[t].get("log_f0_reference"), ".3f")] for t in per])
        typer.echo(f"S2S-ZEST: mean log-F0 source {_num(z.get('log_f0_source'), '.3f')} -> output "
                   f"{_num(z.get('log_f0_converted'), '.3f')} (references {_num(z.get('log_f0_reference'), '.3f')}); "
                   f"moved toward the reference {_num(z.get('moved_toward_reference'), '.0%')}, in the reference's "
                   f"style direction {_num(z.get('moved_in_style_direction'), '.0%')}, shift vs the reference's style "
                   f"shift r = {_num(z.get('shift_correlation'), '.2f')}; wavs + F0 plot in {Path(z['plot']).parent}")
    if "zest" in st and st["zest"].get("vocoder"):
        v = st["zest"]["vocoder"]
        typer.echo(f"S2S-ZEST vocoder: {v['steps']} BigVGAN steps on {v['items']} utterances, mel L1 "
                   f"{v['mel_l1_first']} -> {v['mel_l1_last']}; example {v.get('example')}")
    if "est" in st:
        e = st["est"]
        settings = [x for x in ("SSST", "SSDT", "DSST", "DSDT", "A2A") if any(x in v for v in e["systems"].values())]
        rows = []
        for system, per in e["systems"].items():
            for key, label in (("emo_sim", "Emo-Sim"), ("rate_pcc", "Rate PCC"), ("wer", "WER %"),
                               ("spk_sim", "Spk-Sim")):
                rows.append([system, label, *(_num(per.get(x, {}).get(key), ".2f") for x in settings)])
        emotion = e["backends"].get("emotion") or ""
        caveat = ("; Emo-Sim from the model's own emotion encoder, which favours it: not comparable with the "
                  "thesis's emotion2vec numbers") if emotion.startswith("zest") else ""
        table(f"Emotion style transfer on held-out sentences (emotk evaluate est; {e['coverage']['scored']} scores; "
              f"emotion {emotion}, ASR {e['backends'].get('asr', '').split('+')[0]}{caveat})",
              ["system", "metric", *settings], rows)
        typer.echo(f"EST report: {e['report']}")
    typer.echo(f"run dir: {s['run_dir']}  (config hash {s['config_hash'][:12]}, total {s['seconds']} s)")
