import json
from dataclasses import dataclass

import pytest

from emotk.core.config import resolve
from emotk.core.io import atomic_path, atomic_write_json, check_writable
from emotk.core.runs import RunDir
from emotk.errors import OutputExistsError, UsageError


@dataclass
class Cfg:
    lr: float = 0.1


def test_run_dir_provenance(tmp_path):
    r = resolve(Cfg, "toy", None, ["lr=0.2"])
    run = RunDir.create(tmp_path / "run", r, inputs={"manifest": "abc"}, seed=3, argv=["emotk", "x"])
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["config_hash"] == r.hash and meta["seed"] == 3 and meta["argv"] == ["emotk", "x"]
    assert meta["inputs"] == {"manifest": "abc"} and meta["config"]["lr"] == 0.2
    assert "numpy" in meta["packages"] and meta["emotk_version"]
    assert (tmp_path / "run" / "config.yaml").read_text().startswith("task: toy")
    run.append_jsonl("metrics.jsonl", {"step": 1, "loss": 0.5})
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text()) == {"step": 1, "loss": 0.5}


def test_run_dir_refuses_overwrite_and_checks_resume(tmp_path):
    r = resolve(Cfg, "toy")
    RunDir.create(tmp_path / "run", r)
    with pytest.raises(OutputExistsError, match="--overwrite or --resume"):
        RunDir.create(tmp_path / "run", r)
    assert RunDir.create(tmp_path / "run", r, resume=True).config_hash == r.hash
    with pytest.raises(UsageError, match="config changed"):
        RunDir.create(tmp_path / "run", resolve(Cfg, "toy", None, ["lr=0.5"]), resume=True)
    RunDir.create(tmp_path / "run", resolve(Cfg, "toy", None, ["lr=0.5"]), overwrite=True)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(OutputExistsError):
        check_writable(target, overwrite=False)
