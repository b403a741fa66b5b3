from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from emotk.core.config import RuntimeConfig, config_hash, parse_override, resolve
from emotk.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    kind: Literal["adamw", "adam"] = "adamw"


@dataclass
class Toy:
    epochs: int = 50
    name: str = "toy"
    use_amp: bool = False
    dropout: Optional[float] = None
    optim: Optim = field(default_factory=Optim)


def test_defaults_file_and_overrides_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("task: toy\nepochs: 10\noptim:\n  lr: 0.001\nruntime:\n  device: cpu\n")
    r = resolve(Toy, "toy", f, ["optim.lr=3e-4", "use_amp=true", "optim.betas=[0.8, 0.99]", "runtime.workers=2"])
    assert r.config.epochs == 10
    assert r.config.optim.lr == pytest.approx(3e-4)
    assert r.config.use_amp is True
    assert r.config.optim.betas == [0.8, 0.99]
    assert r.runtime.device == "cpu" and r.runtime.workers == 2
    assert r.sources[0] == "defaults" and r.sources[1] == str(f)


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*did you mean 'optim\.lr'"):
        resolve(Toy, "toy", None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"did you mean 'epochs'"):
        resolve(Toy, "toy", None, ["epoch=3"])


def test_unknown_key_in_file_names_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lrate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown config key 'optim\.lrate'.*did you mean 'optim\.lr'"):
        resolve(Toy, "toy", f)


def test_typed_values_are_strict():
    with pytest.raises(ConfigError, match="expected an integer"):
        resolve(Toy, "toy", None, ["epochs=ten"])
    with pytest.raises(ConfigError, match="expected true/false"):
        resolve(Toy, "toy", None, ["use_amp=maybe"])
    with pytest.raises(ConfigError, match="not one of"):
        resolve(Toy, "toy", None, ["optim.kind=sgd"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        resolve(Toy, "toy", None, ["epochs.x=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("epochs")
    assert resolve(Toy, "toy", None, ["dropout=0.1"]).config.dropout == pytest.approx(0.1)
    assert resolve(Toy, "toy", None, ["dropout=null"]).config.dropout is None


def test_hash_is_stable_and_ignores_runtime(tmp_path):
    a = resolve(Toy, "toy", None, ["epochs=3"])
    b = resolve(Toy, "toy", None, ["epochs=3", "runtime.device=cuda", "runtime.workers=8"])
    c = resolve(Toy, "toy", None, ["epochs=4"])
    assert a.hash == b.hash
    assert a.hash != c.hash
    assert a.hash == config_hash(Toy(epochs=3), "toy")
    assert len(a.hash) == 64


def test_task_mismatch_and_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("task: other\n")
    with pytest.raises(ConfigError, match="not 'toy'"):
        resolve(Toy, "toy", f)
    g = tmp_path / "bad.yaml"
    g.write_text("epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        resolve(Toy, "toy", g)
    with pytest.raises(ConfigError, match="not found"):
        resolve(Toy, "toy", tmp_path / "missing.yaml")


def test_runtime_unknown_key():
    with pytest.raises(ConfigError, match="did you mean 'runtime.device'|did you mean 'device'"):
        resolve(Toy, "toy", None, ["runtime.devce=cpu"])
    assert RuntimeConfig().progress == "auto"
