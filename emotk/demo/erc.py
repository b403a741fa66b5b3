"""The erc stage of ``emotk demo``: hierarchical HCAM on the demo dialogues (``erc train``'s API).

The corpus's dialogue turns (text + speech) become a conversation manifest split by dialogue (the last dialogue is
test, the one before it validation, the others train). Stage II is trained per modality -- text on MiniLM
sentence means, speech on lld frame descriptors -- then stage III fuses the two frozen stage II runs
(configs/erc/demo.yaml); every run is causal, so the fused model also predicts turn by turn (``erc predict
--online``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ERC_CONFIG = "erc/demo"


def erc_stage(manifest_path: Path, out: Path, seed: int, *, config: str = ERC_CONFIG) -> dict[str, Any]:
    """Train text stage II, speech stage II and the stage III fusion into ``out`` (replaced); returns their test
    weighted / macro F1, the split sizes and the run folders."""
    from emotk.core.config import resolve
    from emotk.core.io import atomic_write_text
    from emotk.data.manifest import Manifest
    from emotk.errors import DataError
    from emotk.recipes import find_config, task_spec

    m = Manifest.load(manifest_path)
    turns = [r for r in m.records if r.get("dialogue")]
    dialogues = sorted({str(r["dialogue"]) for r in turns})
    if len(dialogues) < 3:
        raise DataError(f"{manifest_path}: the erc stage needs at least 3 dialogues, the corpus has {len(dialogues)}")
    split = {d: "train" for d in dialogues[:-2]} | {dialogues[-2]: "valid", dialogues[-1]: "test"}
    out.mkdir(parents=True, exist_ok=True)
    data = out / "dialogues.jsonl"
    lines = [json.dumps({**r, "path": str(m.resolve_path(r)), "split": split[str(r["dialogue"])]}) + "\n"
             for r in turns]
    atomic_write_text(data, "".join(lines))
    spec = task_spec("erc.hcam")
    base = [f"data.manifest={data}", f"train.seed={seed}", f"embed.cache_dir={out / 'features'}"]
    plan = {"text": (["model.modalities=[text]"], out / "text"),
            "speech": (["model.modalities=[speech]"], out / "speech"),
            "fusion": (["model.stage=3", "model.modalities=[text,speech]", f"embed.text.from_run={out / 'text'}",
                        f"embed.speech.from_run={out / 'speech'}"], out / "fusion")}
    result: dict[str, Any] = {"dialogues": {s: sum(1 for v in split.values() if v == s)
                                            for s in ("train", "valid", "test")}, "turns": len(turns)}
    for name, (sets, folder) in plan.items():
        resolved = resolve(spec.schema_class(), spec.name, find_config(config), [*base, *sets])
        summary = spec.train_fn()(resolved, folder, overwrite=True, argv=["emotk", "demo"])
        result[name] = {"stage": summary["stage"], "run_dir": str(folder),
                        "test": {k: summary["test"][k]["mean"] for k in ("weighted_f1", "macro_f1")}}
    return result
