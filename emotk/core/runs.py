"""Run directories and provenance.

A run directory holds ``run.json`` (argv, resolved config + hash, emotk version, git revision,
package versions, input hashes, device, seed), ``config.yaml``, ``log.txt`` and whatever the task
writes (``metrics.jsonl``, ``predictions.jsonl``, ``ckpt/``, ``export/``). Provenance is generated,
never typed: every number emotk writes can be traced back through ``run.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotk import __version__
from emotk.core.config import Resolved, dump_yaml
from emotk.core.io import atomic_write_json, atomic_write_text
from emotk.errors import OutputExistsError

_PACKAGES = (
    "numpy", "scipy", "torch", "torchaudio", "transformers", "peft", "speechbrain", "openai-whisper",
    "faster-whisper", "pyworld", "amfm-decompy", "jiwer", "resemblyzer", "soundfile", "soxr", "scikit-learn",
    "typer", "rich", "pyyaml",
)


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed versions, read from metadata (no imports, so this is cheap)."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_revision(start: Path | None = None) -> str | None:
    """The git commit of the emotk source tree (with ``-dirty`` when modified), or None."""
    here = start or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(
    resolved: Resolved | None = None,
    inputs: dict[str, str] | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The block every result carries: versions, config hash, input hashes, seed."""
    prov: dict[str, Any] = {
        "emotk_version": __version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if resolved is not None:
        prov["task"] = resolved.task
        prov["config_hash"] = resolved.hash
    if inputs:
        prov["inputs"] = dict(sorted(inputs.items()))
    if seed is not None:
        prov["seed"] = seed
    if device is not None:
        prov["device"] = device
    return prov


@dataclass
class RunDir:
    """A run directory. Create with :meth:`create` (new run) or :meth:`open` (resume/evaluate)."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        resolved: Resolved,
        *,
        overwrite: bool = False,
        resume: bool = False,
        inputs: dict[str, str] | None = None,
        seed: int | None = None,
        device: str | None = None,
        argv: list[str] | None = None,
    ) -> "RunDir":
        path = Path(path)
        run_json = path / "run.json"
        if run_json.exists():
            if resume:
                run = cls.open(path)
                old = run.meta.get("config_hash")
                if old and old != resolved.hash:
                    from emotk.errors import UsageError

                    raise UsageError(
                        f"{run_json}: cannot resume, the config changed (hash {old[:12]} -> {resolved.hash[:12]}); "
                        "use the same config or start a new run"
                    )
                run.attach_log()
                return run
            if not overwrite:
                raise OutputExistsError(f"run directory {path} already holds a run; pass --overwrite or --resume")
            shutil.rmtree(path)
        elif path.exists() and any(path.iterdir()) and not overwrite:
            raise OutputExistsError(f"{path} exists and is not empty; pass --overwrite to replace it")
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "argv": list(sys.argv if argv is None else argv),
            "config": resolved.as_dict(),
            "config_sources": resolved.sources,
            **provenance(resolved, inputs=inputs, seed=seed, device=device),
        }
        atomic_write_json(run_json, meta)
        atomic_write_text(path / "config.yaml", dump_yaml(resolved))
        run = cls(path=path, meta=meta)
        run.attach_log()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        from emotk.errors import DataError

        path = Path(path)
        run_json = path / "run.json"
        if not run_json.is_file():
            raise DataError(f"{path} is not an emotk run directory (no run.json)")
        try:
            meta = json.loads(run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{run_json}:{e.lineno}: invalid JSON ({e.msg})") from None
        return cls(path=path, meta=meta)

    def attach_log(self) -> None:
        """Mirror emotk's log records into ``log.txt`` for this run.

        Replaces the log of any other run, except the runs this one is nested in: a ``ser train`` experiment
        folder's ``log.txt`` keeps receiving the lines of its ``runs/*`` (each of which has its own)."""
        logger = logging.getLogger("emotk")
        here = self.path.resolve()
        for old in [h for h in logger.handlers if getattr(h, "_emotk_run", False)]:
            folder = getattr(old, "_emotk_run_dir", None)
            if folder is not None and folder != here and folder in here.parents:
                continue  # an enclosing run (experiment folder): keep writing its log too
            logger.removeHandler(old)
            old.close()
        handler = logging.FileHandler(self.path / "log.txt", encoding="utf-8")
        handler._emotk_run = True  # type: ignore[attr-defined]
        handler._emotk_run_dir = here  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)

    def update(self, **fields: Any) -> None:
        self.meta.update(fields)
        atomic_write_json(self.path / "run.json", self.meta)

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line (flushed) — for metrics.jsonl and similar logs."""
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()

    @property
    def config_hash(self) -> str | None:
        return self.meta.get("config_hash")


def report_written_by(folder: str | os.PathLike) -> str | None:
    """The ``written_by`` of ``folder/report.json`` (which command made an evaluation report; "" when it does not
    say, as training's own reports); None when the report is missing or unreadable -- callers then keep it unless
    told to overwrite."""
    try:
        return str(json.loads((Path(folder) / "report.json").read_text(encoding="utf-8")).get("written_by") or "")
    except (OSError, ValueError, AttributeError):
        return None
