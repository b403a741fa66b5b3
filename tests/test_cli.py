import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["data", "features", "models", "pretrain", "ser", "erc", "transfer", "evaluate", "config"]


def _emotk(*args, env=None):
    exe = Path(sys.executable).parent / "emotk"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "emotk"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)


def test_help_through_the_real_entry_point():
    # Speed is the import check below (no heavy package at import) and benchmarks, never a wall-clock assert.
    res = _emotk("--help")
    assert res.returncode == 0
    for g in GROUPS + ["demo"]:
        assert g in res.stdout


def test_help_does_not_import_heavy_packages():
    code = ("import sys; from emotk.cli.main import app; import typer.main; typer.main.get_command(app); "
            "heavy = [m for m in ('torch', 'transformers', 'numpy', 'scipy', 'speechbrain', 'sklearn') "
            "if m in sys.modules]; "
            "print(','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_help(cli, group):
    res = cli(group, "--help")
    assert res.code == 0
    assert "Usage:" in res.out and len(res.out.splitlines()) > 3


def test_erc_is_built(cli):
    res = cli("erc", "--help")
    assert res.code == 0 and "not built yet" not in res.out
    for command in ("embed", "train", "predict"):
        assert command in res.out


def test_usage_errors_exit_2(cli):
    res = cli("data", "prepare")
    assert res.code == 2 and "Missing argument" in res.err
    res = cli("nosuchcommand")
    assert res.code == 2
    res = cli("data", "prepare", "iemocapp", ".", "-o", "x")
    assert res.code == 2 and "did you mean 'iemocap'" in res.err


def test_version_and_global_flags_anywhere(cli, tmp_path):
    res = cli("--version")
    assert res.code == 0 and res.out.startswith("emotk ")
    m = tmp_path / "m.jsonl"
    m.write_text('{"id": "a", "path": "a.wav", "dataset": "d"}\n')
    res = cli("data", "validate", m, "--no-audio", "--json")  # --json after the command
    assert res.code == 0 and json.loads(res.out)["utterances"] == 1


def test_errors_are_one_line_without_traceback(tmp_path):
    res = _emotk("data", "validate", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "manifest not found" in res.stderr
    res = _emotk("-v", "data", "validate", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 1 and "Traceback" in res.stderr  # --verbose shows it


def test_config_show_hash_stable_and_typo_exits_2(cli):
    a = cli("--json", "config", "show", "demo")
    b = cli("--json", "config", "show", "demo")
    assert a.code == 0, a.err
    ha, hb = json.loads(a.out)["hash"], json.loads(b.out)["hash"]
    assert ha == hb and len(ha) == 64
    c = cli("--json", "config", "show", "demo", "--set", "folds=4")
    assert json.loads(c.out)["hash"] != ha
    d = cli("--json", "config", "show", "demo", "--set", "runtime.device=cuda")
    assert json.loads(d.out)["hash"] == ha  # run-time options never enter the hash
    e = cli("config", "show", "demo", "--set", "fold=4")
    assert e.code == 2 and "did you mean 'folds'" in e.err
    f = cli("config", "show", "demo", "--set", "synth.sed=1")
    assert f.code == 2 and "did you mean 'synth.seed'" in f.err
    lst = cli("--json", "config", "list")
    names = [r["name"] for r in json.loads(lst.out)]
    assert "demo" in names


def test_config_show_hash_stable_across_processes():
    a = _emotk("--json", "config", "show", "demo")
    b = _emotk("--json", "config", "show", "demo")
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["hash"] == json.loads(b.stdout)["hash"]
