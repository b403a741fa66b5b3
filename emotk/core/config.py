"""Typed configuration: dataclass schemas, YAML files, strict ``--set`` overrides, stable hashes.

Precedence: schema defaults < config file < ``--set a.b=value`` overrides.

A config file is a YAML mapping whose sections mirror the schema's nested dataclasses.
Two top-level keys are special:

* ``task`` names the schema (``emotk config show FILE`` uses it to find the schema);
* ``runtime`` holds run-time options (device, precision, workers, progress). They do not
  change results, so they are kept apart from hyper-parameters and never enter the hash.

Unknown keys anywhere are errors that suggest the closest valid key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence, TypeVar

from emotk.core.io import sha256_json
from emotk.core.suggest import did_you_mean
from emotk.errors import ConfigError

T = TypeVar("T")


@dataclass
class RuntimeConfig:
    """Options that change how fast a run goes, never what it computes."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16 (AMP on GPU only)
    workers: int = 0  # data-loader worker processes
    threads: int = 0  # torch intra-op threads; 0 = the cores this process may use
    progress: str = "auto"  # auto (TTY only) | on | off


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return False, tp


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/--set value to the annotated type, or raise ConfigError naming ``key``."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"config key '{key}': null is not allowed (expected {_describe(tp)})")
    tp = inner
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r} (write [a, b, ...])")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
            return [coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        item = args[0] if args else Any
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        kt, vt = (typing.get_args(tp) + (Any, Any))[:2]
        return {coerce(k, kt, key): coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping (section), got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    return value


def _suggest(name: str, candidates: list[str]) -> str:
    return did_you_mean(name, candidates, cutoff=0.5) or f" (valid keys: {', '.join(sorted(candidates))})"


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, strictly: unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}")
    hints = _type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        k = unknown[0]
        full = [prefix + n for n in _all_keys(cls)]
        raise ConfigError(f"unknown config key '{prefix}{k}'" + _suggest(prefix + str(k), full))
    kwargs = {k: coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = _type_hints(cls)
    for f in fields(cls):
        tp = _is_optional(hints[f.name])[1]
        if is_dataclass(tp):
            keys.append(prefix + f.name)
            keys.extend(_all_keys(tp, prefix + f.name + "."))
        else:
            keys.append(prefix + f.name)
    return keys


def to_dict(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'a.b=1'`` -> (['a', 'b'], 1). The value is parsed as YAML (numbers, bools, lists)."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=1e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _apply_override(data: dict[str, Any], cls: type, path: list[str], value: Any, text: str) -> None:
    """Set ``path`` in the nested dict ``data`` after checking it exists in schema ``cls``."""
    node, node_cls = data, cls
    for i, part in enumerate(path):
        hints = _type_hints(node_cls)
        names = [f.name for f in fields(node_cls)]
        prefix = ".".join(path[:i])
        if part not in names:
            full = _all_keys(cls)
            shown = (prefix + "." if prefix else "") + part
            raise ConfigError(f"{text}: unknown config key '{shown}'" + _suggest(".".join(path), full))
        tp = _is_optional(hints[part])[1]
        if i == len(path) - 1:
            node[part] = value
            coerce(value, hints[part], ".".join(path))  # fail early with the --set key in the message
            return
        if not is_dataclass(tp):
            raise ConfigError(f"{text}: '{'.'.join(path[: i + 1])}' is a value, not a section")
        node = node.setdefault(part, {})
        if node is None:
            node = data[part] = {}
        node_cls = tp


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping")
    return data


def _deep_merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


@dataclass
class Resolved:
    """A resolved config: hyper-parameters (hashed) plus run-time options (not hashed)."""

    task: str
    config: Any
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sources: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, **to_dict(self.config), "runtime": to_dict(self.runtime)}

    @property
    def hash(self) -> str:
        return config_hash(self.config, self.task)


def config_hash(config: Any, task: str = "") -> str:
    """sha256 over the canonical JSON of the hyper-parameters (never the run-time options)."""
    return sha256_json({"task": task, "config": to_dict(config)})


def resolve(
    schema: type[T],
    task: str,
    file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> Resolved:
    """defaults (schema) < ``base`` mapping < ``file`` < ``overrides``; strict at every step."""
    data: dict[str, Any] = dict(base or {})
    sources = ["defaults"]
    runtime_data: dict[str, Any] = data.pop("runtime", {}) or {}
    if file is not None:
        loaded = read_yaml(file)
        file_task = loaded.pop("task", None)
        if file_task is not None and file_task != task:
            raise ConfigError(f"{file}: config is for task '{file_task}', not '{task}'")
        runtime_data = _deep_merge(runtime_data, loaded.pop("runtime", {}) or {})
        try:
            from_dict(schema, _deep_merge(data, loaded))  # validate the file alone first for a clear message
        except ConfigError as e:
            raise ConfigError(f"{file}: {e}") from None
        data = _deep_merge(data, loaded)
        sources.append(str(file))
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "runtime":
            if len(path) == 1:
                raise ConfigError(f"--set {text}: name a runtime option, e.g. runtime.device=cpu")
            _apply_override(runtime_data, RuntimeConfig, path[1:], value, f"--set {text}")
        else:
            _apply_override(data, schema, path, value, f"--set {text}")
        sources.append(f"--set {text}")
    config = from_dict(schema, data)
    runtime = from_dict(RuntimeConfig, runtime_data, prefix="runtime.")
    if hasattr(config, "validate"):
        config.validate()
    return Resolved(task=task, config=config, runtime=runtime, sources=sources)


def apply_overrides(config: T, items: Sequence[tuple[str, Any]], what: str = "--set") -> T:
    """A copy of dataclass ``config`` with dotted ``(key, value)`` pairs set, checked against its schema like
    ``--set`` and validated (``what`` names the option in error messages, e.g. ``--search``)."""
    data = to_dict(config)
    for key, value in items:
        path = key.split(".")
        if not key or any(not part for part in path):
            raise ConfigError(f"{what} {key!r}: empty key")
        _apply_override(data, type(config), path, value, f"{what} {key}")
    out = from_dict(type(config), data)
    if hasattr(out, "validate"):
        out.validate()
    return out


def dump_yaml(resolved: Resolved) -> str:
    import yaml

    return yaml.safe_dump(resolved.as_dict(), sort_keys=False, allow_unicode=True)


def replace(obj: T, **changes: Any) -> T:
    return dataclasses.replace(obj, **changes)
