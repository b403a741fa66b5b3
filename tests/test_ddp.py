"""Two CPU processes (gloo) started with torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT): same validation metrics and weights as one process, one checkpoint set written by rank 0,
resume across world sizes (1 -> 2 and 2 -> 1), and SIGTERM on one rank -> both checkpoint and exit 3.

Run as a script, this file is the worker: ``python tests/test_ddp.py '<json args>'``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
KW = dict(epochs=3, batch_size=8, keep_last=2, log_every_steps=3)  # 48 items -> 6 steps/epoch


def _cfg(**kw):
    from test_trainer import make_cfg

    from emotk.train import OptimConfig, SchedulerConfig

    return make_cfg(**{**KW, **kw, "optim": OptimConfig(name="adamw", lr=0.03),
                       "scheduler": SchedulerConfig(name="linear", warmup_steps=2)})


def worker(args: dict) -> int:
    """One process of a DDP run; returns its exit code (3 when interrupted)."""
    from test_trainer import BlobTask

    from emotk.core.config import RuntimeConfig
    from emotk.core.runs import RunDir
    from emotk.errors import EmotkError
    from emotk.train.trainer import Trainer

    run = Path(args["run"])
    run.mkdir(parents=True, exist_ok=True)
    task = BlobTask(kill_at_step=args.get("kill_at"), kill_rank=args.get("kill_rank", 0))
    trainer = Trainer(_cfg(), task, RunDir(path=run), RuntimeConfig(device="cpu", threads=1))
    try:
        result = trainer.fit(resume=args.get("resume", False))
    except EmotkError as e:
        sys.stderr.write(f"emotk: error: {e}\n")
        return e.exit_code
    out = Path(args["out"]) / f"result-{trainer.rank}.json"
    out.write_text(json.dumps({"result": result, "world_size": trainer.world_size}))
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, args: dict, timeout: float = 120.0) -> list[int]:
    """Start ``world`` worker processes with torchrun's environment; return their exit codes by rank."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, str(Path(__file__).resolve()), json.dumps(args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    deadline = time.time() + timeout
    codes, logs = [], []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        codes.append(p.returncode)
        logs.append(out)
    if any(c not in (0, 3) for c in codes):
        raise AssertionError("worker failed:\n" + "\n---\n".join(logs))
    return codes


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 1-process run: final weights and metrics lines."""
    from test_trainer import BlobTask, make_trainer, read_metrics, weights

    path = tmp_path_factory.mktemp("ddp") / "ref"
    t = make_trainer(path, BlobTask(), **{k: v for k, v in _cfg().__dict__.items()})
    t.fit()
    from emotk.train import checkpoint as ckpt

    model = BlobTask().build_model()
    ckpt.load_model_weights(ckpt.latest_checkpoint(path / "ckpt"), model)
    return {"weights": weights(model), "metrics": read_metrics(path), "path": path}


def _valid(lines: list[dict]) -> list[dict]:
    return [r for r in lines if r["split"] == "valid"]


def _assert_close_runs(run: Path, reference: dict) -> None:
    import torch
    from test_trainer import BlobTask, read_metrics

    from emotk.train import checkpoint as ckpt

    model = BlobTask().build_model()
    ckpt.load_model_weights(ckpt.latest_checkpoint(run / "ckpt"), model)
    for k, v in model.state_dict().items():
        assert torch.allclose(v, reference["weights"][k], atol=1e-5), k
    got, ref = read_metrics(run), reference["metrics"]
    assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in ref]  # one line per event
    for g, r in zip(got, ref):
        for key in ("loss", "accuracy"):
            if key in r:
                assert g[key] == pytest.approx(r[key], abs=1e-5), (g, r)
    assert [r["accuracy"] for r in _valid(got)] == [r["accuracy"] for r in _valid(ref)]
    assert all(r["aligned"] == 1.0 for r in _valid(got))  # outputs of both ranks back in dataset order


@pytest.mark.slow
def test_two_processes_resume_a_one_process_checkpoint(tmp_path, reference):
    from test_trainer import BlobTask, make_trainer

    from emotk.train import Interrupted
    from emotk.train import checkpoint as ckpt

    run = tmp_path / "run"
    with pytest.raises(Interrupted):  # 1 process, SIGTERM in epoch 2 -> ckpt/step-9
        make_trainer(run, BlobTask(kill_at_step=8), **_cfg().__dict__).fit()
    assert ckpt.read_meta(run / "ckpt" / "step-9")["world_size"] == 1
    out = tmp_path / "out"
    out.mkdir()
    assert launch(2, {"run": str(run), "out": str(out), "resume": True}) == [0, 0]
    _assert_close_runs(run, reference)
    # rank 0 alone wrote one checkpoint set; both ranks agree on the summary
    root = run / "ckpt"
    assert sorted(p.name for p in root.iterdir()) == ["best", "step-12", "step-18"]
    assert ckpt.read_meta(root / "step-18")["world_size"] == 2
    assert sorted(ckpt.read_checkpoint(root / "step-18")[1]["rng"]) == ["0", "1"]
    r0, r1 = (json.loads((out / f"result-{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["world_size"] == 2 and r0["result"]["stopped"] == "completed"
    assert r0["result"]["best"]["accuracy"] == max(r["accuracy"] for r in _valid(reference["metrics"]))
    assert sorted(p.name for p in run.iterdir()) == ["ckpt", "metrics.jsonl"]


@pytest.mark.slow
def test_sigterm_on_one_rank_checkpoints_exits_3_and_resumes_on_one_process(tmp_path, reference):
    from test_trainer import BlobTask, make_trainer

    from emotk.train import checkpoint as ckpt

    run = tmp_path / "run"
    out = tmp_path / "out"
    out.mkdir()
    codes = launch(2, {"run": str(run), "out": str(out), "kill_at": 8, "kill_rank": 1})
    assert codes == [3, 3]  # rank 1 got the signal; the ranks agree, checkpoint, and both exit with 3
    assert [s for s, _ in ckpt.list_checkpoints(run / "ckpt")] == [6, 9]
    meta = ckpt.read_meta(run / "ckpt" / "step-9")
    assert meta["world_size"] == 2 and meta["epoch"] == 2 and meta["step_in_epoch"] == 3
    assert not list(out.iterdir())
    result = make_trainer(run, BlobTask(), **_cfg().__dict__).fit(resume=True)
    assert result["stopped"] == "completed" and result["steps"] == 18
    _assert_close_runs(run, reference)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(worker(json.loads(sys.argv[1])))
