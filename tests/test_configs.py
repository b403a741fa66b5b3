"""Every shipped recipe under configs/ names a known task and resolves strictly against its schema."""

from pathlib import Path

import pytest
import yaml

from emotk.core.config import read_yaml, resolve
from emotk.recipes import TASKS, configs_dir, schema_for

CONFIGS = sorted(configs_dir().rglob("*.yaml"))


def test_configs_exist():
    assert CONFIGS, "no shipped configs found"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(configs_dir())))
def test_shipped_config_resolves(path: Path):
    task = read_yaml(path).get("task")
    assert task in TASKS, f"{path}: task {task!r} is not registered in emotk.recipes.TASKS"
    resolved = resolve(schema_for(task), task, path)
    assert len(resolved.hash) == 64
    # the hash is a function of the hyper-parameters only
    assert resolved.hash == resolve(schema_for(task), task, path, ["runtime.workers=3"]).hash


def test_every_task_has_a_shipped_recipe():
    tasks = {yaml.safe_load(p.read_text()).get("task") for p in CONFIGS}
    missing = set(TASKS) - tasks
    assert not missing, f"tasks without a shipped config: {missing}"
