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


def test_nested_run_logs_reach_the_enclosing_run_once(tmp_path, capsys):
    from emotk.core.log import get_logger, setup_logging

    setup_logging(0)
    r = resolve(Cfg, "toy")
    RunDir.create(tmp_path / "exp", r)
    for name in ("a", "b"):
        RunDir.create(tmp_path / "exp" / "runs" / name, r)
        get_logger("t").info(f"line of {name}")
    top = (tmp_path / "exp" / "log.txt").read_text()
    assert top.count("line of a") == 1 and top.count("line of b") == 1
    assert "line of b" not in (tmp_path / "exp" / "runs" / "a" / "log.txt").read_text()  # a sibling's log is closed
    assert capsys.readouterr().err.count("line of b") == 1  # stderr once, not once per log file
    RunDir.create(tmp_path / "other", r)  # an unrelated run replaces the experiment's log
    get_logger("t").info("line of other")
    assert "line of other" not in (tmp_path / "exp" / "log.txt").read_text()
