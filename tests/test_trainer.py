"""The training engine on a tiny synthetic task (a small MLP on Gaussian blobs): learning, accumulation,
clipping, selection, retention, save/load, signal -> checkpoint -> exact resume, early stopping, debug mode,
plus the pieces it is built from (sharding, state flattening, schedules, config checks, SLURM script)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emotk.core.config import RuntimeConfig
from emotk.core.runs import RunDir
from emotk.core.runtime import resolve_device, resolve_precision, resolve_threads
from emotk.errors import EXIT_INTERRUPTED, ConfigError, DataError, EmotkError, OutputExistsError, UsageError
from emotk.train import Interrupted, OptimConfig, SchedulerConfig, StepState, TrainConfig, TrainTask
from emotk.train import checkpoint as ckpt
from emotk.train import distributed as dist
from emotk.train.optim import lr_factor
from emotk.train.trainer import Trainer

DIM, CLASSES = 4, 3


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The trainer sets torch's global thread count (runtime.threads); give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class BlobTask(TrainTask):
    """3 Gaussian blobs in 4-D; an MLP classifier. Knobs make it fail/stop/score on purpose."""

    def __init__(self, n_train: int = 48, n_valid: int = 25, dropout: float = 0.0, data_seed: int = 0,
                 score_script: list[float] | None = None, kill_at_step: int | None = None,
                 kill_signal: str = "SIGTERM", kill_rank: int = 0, nan_loss: bool = False,
                 groups: str | None = None):
        rng = np.random.default_rng(data_seed)
        centers = rng.normal(0.0, 2.0, (CLASSES, DIM))

        def make(n: int, prefix: str) -> list:
            y = rng.integers(0, CLASSES, n)
            x = centers[y] + rng.normal(0.0, 1.0, (n, DIM))
            return [(torch.tensor(x[i], dtype=torch.float32), int(y[i]), f"{prefix}{i:03d}") for i in range(n)]

        self.train, self.valid = make(n_train, "t"), make(n_valid, "v")
        self.dropout = dropout
        self.score_script = score_script
        self.kill_at_step, self.kill_signal, self.kill_rank = kill_at_step, kill_signal, kill_rank
        self.nan_loss = nan_loss
        self.groups = groups
        self.evals = 0
        self.valid_batches = 0
        self.weights_at_epoch_start: dict[int, dict[str, torch.Tensor]] = {}
        self.calls: list[tuple[int, str, int]] = []

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Dropout(self.dropout), nn.Linear(16, CLASSES))

    def train_dataset(self):
        return self.train

    def valid_dataset(self):
        return self.valid

    def collate(self, items):
        return {"x": torch.stack([i[0] for i in items]), "y": torch.tensor([i[1] for i in items]),
                "ids": [i[2] for i in items]}

    def param_groups(self, model):
        if self.groups != "two":
            return None
        return [{"params": model[0].parameters(), "optimizer": "first", "optim": OptimConfig(name="sgd", lr=0.1)},
                {"params": model[3].parameters(), "optimizer": "second"}]

    def training_step(self, model, batch, state: StepState) -> dict:
        self.calls.append((state.step, state.optimizer, state.micro))
        if self.kill_at_step is not None and state.step == self.kill_at_step and state.micro == 0 \
                and state.rank == self.kill_rank:
            os.kill(os.getpid(), getattr(signal, self.kill_signal))
        logits = model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"])
        if self.nan_loss:
            loss = loss * float("nan")
        return {"loss": loss, "accuracy": (logits.argmax(1) == batch["y"]).float().mean(), "note": "ignored"}

    def validation_step(self, model, batch):
        self.valid_batches += 1
        logits = model(batch["x"])
        # a per-item output whose width varies between batches: gathered as a list of per-item tensors
        frames = logits[:, :1].repeat(1, 1 + len(batch["ids"]) % 2)
        return {"logits": logits, "labels": batch["y"], "ids": batch["ids"], "frames": frames}

    def validation_metrics(self, outputs):
        logits, labels = outputs["logits"], outputs["labels"]
        metrics = {"accuracy": float((logits.argmax(1) == labels).float().mean()),
                   "loss": float(F.cross_entropy(logits, labels)),
                   "aligned": float(all(torch.all(f == logits[i, 0]) for i, f in enumerate(outputs["frames"]))
                                    and outputs["ids"] == sorted(outputs["ids"]))}
        if self.score_script is not None:
            metrics["score"] = self.score_script[self.evals]
        self.evals += 1
        return metrics

    def on_epoch_start(self, epoch, model):
        self.weights_at_epoch_start[epoch] = {k: v.clone() for k, v in model.state_dict().items()}


def make_cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=8, optim=OptimConfig(lr=0.05), select_metric="accuracy", log_every_steps=4)
    base.update(kw)
    return TrainConfig(**base)


def make_trainer(path: Path, task: TrainTask, **kw) -> Trainer:
    path.mkdir(parents=True, exist_ok=True)
    return Trainer(make_cfg(**kw), task, RunDir(path=path), RuntimeConfig(device="cpu", threads=1))


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- the loop ---------------------------------------------------------------------------------------

def test_loss_falls_and_validation_accuracy_rises(tmp_path):
    trainer = make_trainer(tmp_path / "run", BlobTask(), epochs=6)
    result = trainer.fit()
    lines = read_metrics(tmp_path / "run")
    train = [r for r in lines if r["split"] == "train"]
    valid = [r for r in lines if r["split"] == "valid"]
    assert len(valid) == 6 and [r["epoch"] for r in valid] == [1, 2, 3, 4, 5, 6]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert valid[-1]["accuracy"] > valid[0]["accuracy"] and valid[-1]["accuracy"] >= 0.8
    assert "note" not in train[0] and "accuracy" in train[0] and train[0]["lr"] == pytest.approx(0.05)
    assert all(r["aligned"] == 1.0 for r in valid)
    assert result["stopped"] == "completed" and result["steps"] == 6 * 6
    assert result["best"]["accuracy"] == max(r["accuracy"] for r in valid)


@pytest.mark.parametrize("accum", [2, 3])
def test_grad_accumulation_equals_one_big_batch(tmp_path, accum):
    """batch 8 in one micro-batch == 8 items over `accum` micro-batches (3 -> uneven 3/3/2 split)."""
    sgd = OptimConfig(name="sgd", lr=0.2)
    a = make_trainer(tmp_path / "a", BlobTask(), epochs=2, optim=sgd)
    a.fit()
    b = make_trainer(tmp_path / "b", BlobTask(), epochs=2, optim=sgd, grad_accum=accum)
    b.fit()
    task = BlobTask()
    for k, v in a.model.state_dict().items():
        assert torch.allclose(v, b.model.state_dict()[k], atol=1e-6), k
    assert not torch.equal(a.model.state_dict()["0.weight"], task.build_model().state_dict()["0.weight"])


def test_clipping_bounds_the_update(tmp_path):
    clip = 1e-3
    sgd = OptimConfig(name="sgd", lr=1.0)
    t = make_trainer(tmp_path / "clip", BlobTask(), max_steps=1, optim=sgd, clip_grad_norm=clip, log_every_steps=1)
    before = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
    t.fit()
    t_free = make_trainer(tmp_path / "free", BlobTask(), max_steps=1, optim=sgd, log_every_steps=1)
    t_free.fit()
    delta = (torch.cat([p.detach().flatten() for p in t.model.parameters()]) - before).norm().item()
    free = (torch.cat([p.detach().flatten() for p in t_free.model.parameters()]) - before).norm().item()
    assert delta == pytest.approx(clip, rel=1e-4)
    assert free > 10 * clip
    logged = [r for r in read_metrics(tmp_path / "clip") if r["split"] == "train"][0]
    assert logged["grad_norm"] == pytest.approx(free, rel=1e-4)  # pre-clip norm == the unclipped update size


def test_best_checkpoint_by_validation_metric_and_last_n_kept(tmp_path):
    task = BlobTask(score_script=[0.1, 0.5, 0.3, 0.2, 0.4])
    t = make_trainer(tmp_path / "run", task, epochs=5, select_metric="score", keep_last=2)
    result = t.fit()
    root = tmp_path / "run" / "ckpt"
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [24, 30]  # 6 steps/epoch, last 2 epochs
    assert sorted(p.name for p in root.iterdir()) == ["best", "step-24", "step-30"]
    best_meta = ckpt.read_meta(root / "best")
    assert best_meta["step"] == 12 and best_meta["epoch"] == 2
    assert result["best"]["score"] == 0.5 and result["best"]["epoch"] == 2 and result["best"]["step"] == 12
    assert result["last"]["epoch"] == 5 and result["last"]["score"] == 0.4
    # best/ holds the weights at the end of epoch 2 (= start of epoch 3), and fit() leaves them in the model
    fresh = task.build_model()
    ckpt.load_model_weights(root / "best", fresh)
    for k, v in task.weights_at_epoch_start[3].items():
        assert torch.equal(fresh.state_dict()[k], v)
        assert torch.equal(t.model.state_dict()[k], v)
    assert not torch.equal(task.weights_at_epoch_start[3]["0.weight"], task.weights_at_epoch_start[5]["0.weight"])


def test_early_stopping_min_mode(tmp_path):
    task = BlobTask(score_script=[0.5, 0.4, 0.45, 0.6, 0.7, 0.8])
    result = make_trainer(tmp_path / "run", task, epochs=6, select_metric="score", select_mode="min",
                          early_stop_patience=2).fit()
    assert result["stopped"] == "early_stop"
    assert result["epochs"] == 4 and result["steps"] == 24
    assert result["best"]["epoch"] == 2 and result["best"]["score"] == 0.4
    assert ckpt.read_meta(tmp_path / "run" / "ckpt" / "step-24")["done"] == "early_stop"


def test_save_then_load_gives_identical_weights_and_no_pickle(tmp_path):
    task = BlobTask()
    t = make_trainer(tmp_path / "run", task, epochs=1)
    t.fit()
    last = ckpt.latest_checkpoint(tmp_path / "run" / "ckpt")
    files = sorted(p.name for p in last.iterdir())
    assert files == ["meta.json", "model.safetensors", "state.safetensors"]
    fresh = task.build_model()
    assert ckpt.load_model_weights(tmp_path / "run", fresh).name == "model.safetensors"
    x = torch.randn(5, DIM)
    fresh.eval(), t.model.eval()
    assert torch.equal(fresh(x), t.model(x))
    meta, state = ckpt.read_checkpoint(last)  # optimiser state comes back from safetensors + JSON
    opt_state = state["optimizers"]["main"]
    assert set(opt_state["state"]) == {0, 1, 2, 3} and torch.is_tensor(opt_state["state"][0]["exp_avg"])
    assert isinstance(opt_state["param_groups"][0]["betas"], tuple)
    with pytest.raises(DataError, match="model.safetensors.*(missing|unexpected|does not fit)"):
        ckpt.load_model_weights(last, nn.Sequential(nn.Linear(DIM, 8), nn.ReLU(), nn.Linear(8, CLASSES)))
    with pytest.raises(DataError, match="does not fit"):
        ckpt.load_model_weights(last, nn.Linear(DIM, CLASSES))


@pytest.mark.parametrize("kill_at, sig", [(8, "SIGTERM"), (11, "SIGUSR1")])  # mid-epoch 2 / last step of 2
def test_signal_checkpoint_then_resume_matches_uninterrupted(tmp_path, kill_at, sig):
    kw = dict(epochs=3, grad_accum=2, clip_grad_norm=1.0, log_every_steps=5, keep_last=1,
              optim=OptimConfig(name="adamw", lr=0.02, weight_decay=0.01),
              scheduler=SchedulerConfig(name="cosine", warmup_steps=3, min_lr_ratio=0.1))
    ref = make_trainer(tmp_path / "ref", BlobTask(dropout=0.3), **kw)
    ref_result = ref.fit()
    ref_last = weights(ckpt_model(tmp_path / "ref"))

    run = tmp_path / "run"
    first = make_trainer(run, BlobTask(dropout=0.3, kill_at_step=kill_at, kill_signal=sig), **kw)
    with pytest.raises(Interrupted) as info:
        first.fit()
    err = info.value
    assert err.exit_code == EXIT_INTERRUPTED == 3 and isinstance(err, EmotkError)
    assert err.signal == sig and err.step == kill_at + 1 and err.result["stopped"] == "signal"
    assert Path(err.checkpoint) == run / "ckpt" / f"step-{kill_at + 1}"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored

    with pytest.raises(OutputExistsError):
        make_trainer(run, BlobTask(dropout=0.3), **kw).fit()
    resumed = make_trainer(run, BlobTask(dropout=0.3), **kw)
    result = resumed.fit(resume=True)
    for k, v in weights(ckpt_model(run)).items():
        assert torch.equal(v, ref_last[k]), k
    assert read_metrics(run) == read_metrics(tmp_path / "ref")
    assert {k: v for k, v in result.items() if k not in ("best", "last")} == \
           {k: v for k, v in ref_result.items() if k not in ("best", "last")}
    assert result["best"]["accuracy"] == ref_result["best"]["accuracy"]
    assert result["best"]["epoch"] == ref_result["best"]["epoch"]


def ckpt_model(run: Path) -> nn.Module:
    model = BlobTask().build_model()
    ckpt.load_model_weights(ckpt.latest_checkpoint(run / "ckpt"), model)
    return model


def test_loader_workers_give_the_same_training(tmp_path):
    kw = dict(epochs=2, optim=OptimConfig(name="sgd", lr=0.2))
    plain = make_trainer(tmp_path / "plain", BlobTask(dropout=0.2), **kw)
    plain.fit()
    (tmp_path / "workers").mkdir()
    workers = Trainer(make_cfg(**kw), BlobTask(dropout=0.2), RunDir(path=tmp_path / "workers"),
                      RuntimeConfig(device="cpu", threads=1, workers=1))
    workers.fit()
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, workers.model.state_dict()[k]), k


def test_debug_mode_two_batches_two_epochs_and_finished_resume(tmp_path):
    task = BlobTask(n_valid=40)
    t = make_trainer(tmp_path / "run", task, epochs=50, debug=True, log_every_steps=1)
    result = t.fit()
    assert result["steps"] == 4 and result["epochs"] == 2 and result["stopped"] == "completed"
    assert sorted({s for s, _, _ in task.calls}) == [0, 1, 2, 3]
    assert task.valid_batches == 2 * 2  # two validation batches per evaluation
    again = make_trainer(tmp_path / "run", BlobTask(n_valid=40), epochs=50, debug=True).fit(resume=True)
    assert again["steps"] == 4 and again["best"] == result["best"]


def test_resuming_a_finished_run_keeps_its_last_epoch(tmp_path):
    # killed between the final checkpoint and the final (test) evaluation: --resume must label those rows
    # with the run's last epoch, not "epoch 4 of 3"
    t = make_trainer(tmp_path / "run", BlobTask(n_valid=40), epochs=3)
    result = t.fit()
    assert result["epochs"] == 3 and result["stopped"] == "completed"
    again = make_trainer(tmp_path / "run", BlobTask(n_valid=40), epochs=3)
    resumed = again.fit(resume=True)
    assert resumed["epochs"] == 3 and resumed["last"]["epoch"] == 3 and resumed["steps"] == result["steps"]
    again.evaluate(BlobTask(n_valid=40).valid_dataset(), split="test")
    rows = read_metrics(tmp_path / "run")
    assert max(r["epoch"] for r in rows) == 3 and rows[-1]["split"] == "test" and rows[-1]["epoch"] == 3


def test_several_optimisers_each_get_their_loss(tmp_path):
    task = BlobTask(groups="two")
    t = make_trainer(tmp_path / "run", task, max_steps=3, grad_accum=2, log_every_steps=1)
    before = weights(t.model)
    t.fit()
    assert task.calls[:4] == [(0, "first", 0), (0, "first", 1), (0, "second", 0), (0, "second", 1)]
    after = t.model.state_dict()
    assert not torch.equal(before["0.weight"], after["0.weight"])
    assert not torch.equal(before["3.weight"], after["3.weight"])
    _, state = ckpt.read_checkpoint(ckpt.latest_checkpoint(tmp_path / "run" / "ckpt"))
    assert sorted(state["optimizers"]) == ["first", "second"]
    first_line = read_metrics(tmp_path / "run")[0]
    assert {"loss/first", "loss/second", "lr/first", "lr/second"} <= set(first_line)
    assert first_line["lr/first"] == pytest.approx(0.1) and first_line["lr/second"] == pytest.approx(0.05)


def test_evaluate_returns_outputs_in_dataset_order(tmp_path):
    task = BlobTask(n_valid=21)
    t = make_trainer(tmp_path / "run", task, batch_size=4)
    out = t.evaluate(task.valid, split="test")
    assert out["items"] == 21 and out["outputs"]["ids"] == [f"v{i:03d}" for i in range(21)]
    assert out["outputs"]["logits"].shape == (21, CLASSES)
    assert 0.0 <= out["metrics"]["accuracy"] <= 1.0
    line = read_metrics(tmp_path / "run")[-1]
    assert line["split"] == "test" and line["accuracy"] == out["metrics"]["accuracy"]


def test_variable_length_outputs_become_per_item_lists():
    from emotk.train.trainer import _gather_outputs

    batches = [([0, 1], {"frames": torch.zeros(2, 3), "text": ["a", "b"]}),
               ([2], {"frames": torch.ones(1, 5), "text": ["c"]})]
    out = _gather_outputs(batches)
    assert [f.shape[0] for f in out["frames"]] == [3, 3, 5] and out["text"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="per-item"):
        from emotk.train.trainer import _check_outputs

        _check_outputs({"logits": torch.zeros(3, 2)}, 4)


def test_nan_loss_and_bad_selection_metric_are_clear_errors(tmp_path):
    with pytest.raises(EmotkError, match="loss is nan at step 1"):
        make_trainer(tmp_path / "nan", BlobTask(nan_loss=True), max_steps=1, log_every_steps=1).fit()
    with pytest.raises(ConfigError, match="'weighted_f1' is not a validation metric.*accuracy, aligned, loss"):
        make_trainer(tmp_path / "sel", BlobTask(), max_steps=1, select_metric="weighted_f1").fit()


# --- building blocks --------------------------------------------------------------------------------

def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainConfig(batch_size=0).validate()
    with pytest.raises(ConfigError, match="train.optim.name"):
        TrainConfig(optim=OptimConfig(name="lamb")).validate()
    with pytest.raises(ConfigError, match="train.scheduler.name"):
        TrainConfig(scheduler=SchedulerConfig(name="poly")).validate()
    with pytest.raises(ConfigError, match="train.batch_size.*grad_accum"):
        TrainConfig(batch_size=2, grad_accum=4).validate()
    with pytest.raises(ConfigError, match="runtime.precision"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_precision("bf16", torch.device("cpu")) == (None, False)


def test_lr_schedules():
    cos = SchedulerConfig(name="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_factor(s, cos, 14, 5) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, cos, 14, 5) == pytest.approx(1.0)
    assert lr_factor(9, cos, 14, 5) == pytest.approx(0.55)
    assert lr_factor(14, cos, 14, 5) == pytest.approx(0.1)
    lin = SchedulerConfig(name="linear")
    assert lr_factor(5, lin, 10, 5) == pytest.approx(0.5)
    assert lr_factor(3, SchedulerConfig(name="exponential", gamma=0.5), 10, 5) == pytest.approx(0.125)
    assert lr_factor(7, SchedulerConfig(name="step", gamma=0.5), 10, 5) == pytest.approx(0.5)


def test_sharding_is_world_size_independent():
    for n, b in [(48, 8), (50, 7), (5, 8)]:
        batches = dist.global_batches(n, b, seed=3, epoch=2)
        assert sorted(int(i) for bt in batches for i in bt) == list(range(n))
        assert all(np.array_equal(x, y) for x, y in zip(batches, dist.global_batches(n, b, seed=3, epoch=2)))
        assert not np.array_equal(np.concatenate(batches), np.concatenate(dist.global_batches(n, b, 3, 3)))
        for world in (1, 2, 3):
            for accum in (1, 2, 3):
                shards = [dist.shard_batch(batches[0], world, r, accum) for r in range(world)]
                merged = [i for m in range(accum) for r in range(world) for i in shards[r][m]]
                assert merged == [int(i) for i in batches[0]]
                sizes = [len(s) for r in range(world) for s in shards[r]]
                assert max(sizes) - min(sizes) <= 1
    assert sorted(dist.eval_shard(7, 2, 0) + dist.eval_shard(7, 2, 1)) == list(range(7))


def test_rank_detection_from_torchrun_and_srun_environments():
    assert dist.detect({}) == dist.DistInfo()
    tr = dist.detect({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                      "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "4"})
    assert (tr.rank, tr.world_size, tr.local_rank, tr.local_world_size, tr.source) == (3, 8, 1, 2, "torchrun")
    sl = dist.detect({"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1",
                      "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_NODEID": "1"})
    assert (sl.rank, sl.world_size, sl.local_rank, sl.local_world_size, sl.source) == (5, 8, 1, 4, "slurm")
    # a plain `python` inside an sbatch script (no job step) stays single-process
    assert dist.detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}).world_size == 1
    with pytest.raises(UsageError, match="WORLD_SIZE|not an integer"):
        dist.detect({"RANK": "x", "WORLD_SIZE": "2"})


def test_device_and_threads():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(UsageError, match="expected auto, cpu"):
        resolve_device("tpu")
    cores = len(os.sched_getaffinity(0))
    assert resolve_threads(0, 1) == cores and resolve_threads(0, 2 * cores) == 1 and resolve_threads(3, 2) == 3


def test_state_flattening_round_trip_without_pickle():
    state = {"a": {1: torch.arange(3), 2: None}, "b": (1.5, "x", [np.arange(4, dtype=np.uint32)]),
             "c": {"__tensor__": "tricky key"}, "d": torch.tensor(2.0)}
    tree, tensors = ckpt.flatten_state(state)
    json.dumps(tree)
    back = ckpt.unflatten_state(json.loads(json.dumps(tree)), tensors)
    assert torch.equal(back["a"][1], torch.arange(3)) and back["a"][2] is None
    assert back["b"][:2] == (1.5, "x") and back["b"][2][0].dtype == np.uint32
    assert back["c"] == {"__tensor__": "tricky key"} and back["d"].item() == 2.0
    with pytest.raises(TypeError, match="no pickle"):
        ckpt.flatten_state({"f": object()})


# --- SLURM launch ----------------------------------------------------------------------------------

def test_slurm_script_content():
    from emotk.train.launch import slurm_script

    s = slurm_script(["ser", "train", "--config", "my cfg.yaml", "--resume"], nodes=2, gpus_per_node=4,
                     cpus_per_task=16, time="1-00:00:00", partition="gpu", account="lab", job_name="ser", mem="64G")
    for needle in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4", "#SBATCH --partition=gpu",
                   "#SBATCH --account=lab", "#SBATCH --mem=64G", "#SBATCH --signal=B:USR1@120",
                   "#SBATCH --requeue", "--nnodes 2 --nproc_per_node 4", "--rdzv_backend c10d",
                   '--rdzv_endpoint "$MASTER_ADDR:29500"', "-m emotk ser train --config 'my cfg.yaml' --resume",
                   "scontrol requeue", "OMP_NUM_THREADS=4"):
        assert needle in s, needle
    assert subprocess.run(["bash", "-n"], input=s, text=True).returncode == 0
    with pytest.raises(UsageError, match="--time"):
        slurm_script(["ser"], time="tomorrow")
    with pytest.raises(UsageError, match="command"):
        slurm_script([])


@pytest.mark.parametrize("sig, requeued", [("USR1", True), ("TERM", False)])
def test_slurm_script_checkpoints_and_requeues_on_usr1(tmp_path, sig, requeued):
    """Run the generated script with stub srun/scontrol: USR1 -> TERM to the step -> exit 3 -> requeue."""
    from emotk.train.launch import slurm_script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n"
        f"echo \"srun $*\" >> {log}\n"
        "trap 'echo step-got-TERM >> " + str(log) + "; exit 3' TERM\n"
        f"touch {tmp_path}/started\n"
        "while true; do sleep 0.05; done\n"
    )
    (bin_dir / "scontrol").write_text(
        f"#!/bin/bash\nif [ \"$1\" = show ]; then echo node1; else echo \"scontrol $*\" >> {log}; fi\n"
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(slurm_script(["ser", "train", "--resume"]))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42",
           "SLURM_JOB_NODELIST": "node1"}
    proc = subprocess.Popen(["bash", str(script)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(getattr(signal, f"SIG{sig}"))
    proc.wait(timeout=10)
    text = log.read_text()
    assert "torchrun --nnodes 1 --nproc_per_node 1" in text and "-m emotk ser train --resume" in text
    assert "step-got-TERM" in text
    assert ("scontrol requeue 42" in text) == requeued
    assert proc.returncode == (0 if requeued else 3)


def test_launch_cli_prints_script():
    import typer
    from typer.testing import CliRunner

    from emotk.cli.launch import app

    root = typer.Typer()  # mounted the way emotk.cli.main mounts command groups
    root.add_typer(app, name="launch")
    root.command("other")(lambda: None)
    args = ["launch", "slurm", "--nodes", "2", "--gpus-per-node", "2", "--", "ser", "train", "-c", "x.yaml", "--resume"]
    res = CliRunner().invoke(root, args)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("#!/bin/bash") and "-m emotk ser train -c x.yaml --resume" in res.output
    assert "--nnodes 2 --nproc_per_node 2" in res.output


def test_amp_code_path_with_grad_scaler_and_resume(tmp_path):
    """The fp16 recipe (autocast + GradScaler: scale, unscale before clipping, step, update, checkpointed
    scale) exercised on CPU with bf16 autocast and a CPU GradScaler, since CUDA is not always present."""
    kw = dict(epochs=2, clip_grad_norm=1.0, optim=OptimConfig(name="adamw", lr=0.03))

    def amp_trainer(path, task):
        t = make_trainer(path, task, **kw)
        t.amp_dtype = torch.bfloat16
        t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3)
        return t

    ref = amp_trainer(tmp_path / "ref", BlobTask())
    ref.fit()
    assert ref.scaler.get_scale() == 2.0 ** 14  # 12 finite steps, growth every 3
    lines = [r for r in read_metrics(tmp_path / "ref") if r["split"] == "train"]
    assert lines[-1]["loss"] < lines[0]["loss"] and 0 < lines[0]["grad_norm"] < 20  # unscaled before clipping
    with pytest.raises(Interrupted):
        amp_trainer(tmp_path / "run", BlobTask(kill_at_step=7)).fit()
    assert ckpt.read_checkpoint(tmp_path / "run" / "ckpt" / "step-8")[1]["scaler"]["scale"] == 2.0 ** 12
    resumed = amp_trainer(tmp_path / "run", BlobTask())
    resumed.fit(resume=True)
    assert resumed.scaler.get_scale() == 2.0 ** 14
    for k, v in weights(ckpt_model(tmp_path / "run")).items():
        assert torch.equal(v, weights(ckpt_model(tmp_path / "ref"))[k]), k
