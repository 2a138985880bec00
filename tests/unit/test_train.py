"""The training loop on a toy two-part task (tests/toy_task.py): LR schedule, clipping, EMA,
pickle-free checkpoints, exact resume, SIGTERM / SIGKILL, torchrun with two CPU ranks."""
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from dmospeech.ops.checkpoint import flatten, read_state, unflatten
from dmospeech.config import OptimizerConfig
from dmospeech.ops.runtime import rng_state
from dmospeech.ops.training import EMA, Part, State, latest_checkpoint, load_part_weights, lr_at, read_run_config, train
from tests.helpers import PROJECT_ROOT, child_env
from tests.toy_task import RUN_CONFIG, ToyTask, loop_config, weights_hash

OPT = OptimizerConfig(lr=1.0, min_lr=0.1, betas=(0.9, 0.99), weight_decay=0.0, warmup_steps=4, grad_clip=1.0)


def metric_rows(report_dir: Path, name: str) -> list[str]:
    return (Path(report_dir) / "dvclive" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()


def toy_script(spec: dict) -> list[str]:
    return [sys.executable, "-m", "tests.toy_task", json.dumps(spec)]


def single_part_state(module: nn.Module, opt: OptimizerConfig = OPT, **loop) -> State:
    part = Part("p", module, opt)
    part._ema = EMA(module)
    optimizer = torch.optim.AdamW(module.parameters(), lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay)
    return State({"p": part}, {"p": optimizer}, loop_config("unused", "unused", max_steps=20, **loop),
                 torch.device("cpu"), 0, 1)


# ----------------------------------------------------------------------------- maths
def test_lr_linear_warmup_then_cosine_to_min_lr():
    assert [lr_at(s, OPT, 20) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(4, OPT, 20) == pytest.approx(1.0)
    assert lr_at(12, OPT, 20) == pytest.approx(0.55)          # half way: (lr + min_lr) / 2
    assert lr_at(20, OPT, 20) == pytest.approx(0.1) and lr_at(50, OPT, 20) == pytest.approx(0.1)
    decay = [lr_at(s, OPT, 20) for s in range(4, 21)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_update_clips_to_grad_clip_and_reports_the_norm_before_clipping():
    lin = nn.Linear(2, 1, bias=False)
    state = single_part_state(lin)
    state.step = 6
    logs = state.update("p", (lin.weight * torch.tensor([[30.0, 40.0]])).sum())
    assert logs["grad_norm/p"] == pytest.approx(50.0)
    assert lin.weight.grad.norm().item() == pytest.approx(1.0)
    assert logs["lr/p"] == pytest.approx(lr_at(6, OPT, 20))

    lin = nn.Linear(2, 1, bias=False)
    state = single_part_state(lin, OptimizerConfig(**{**OPT.__dict__, "grad_clip": 0.0}))
    assert state.update("p", (lin.weight * torch.tensor([[30.0, 40.0]])).sum())["grad_norm/p"] == pytest.approx(50.0)
    assert lin.weight.grad.norm().item() == pytest.approx(50.0)  # 0 = no clipping


def test_ema_math_buffers_and_exact_swap():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    net(torch.randn(4, 2))  # moves running stats, bumps num_batches_tracked
    ema.update(0.9)
    for k, v in net.state_dict().items():
        want = 0.9 * before[k] + 0.1 * v if v.is_floating_point() else v
        assert torch.allclose(ema.shadow[k], want), k
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped() as swapped:
        assert all(torch.equal(swapped.state_dict()[k], ema.shadow[k]) for k in trained)
    assert all(torch.equal(net.state_dict()[k], trained[k]) for k in trained)


@pytest.mark.filterwarnings("ignore:.*weight_norm.*is deprecated:FutureWarning")
def test_ema_every_and_modules_that_cannot_be_deep_copied():
    conv = nn.utils.weight_norm(nn.Conv1d(1, 1, 3))  # old-style weight norm: copy.deepcopy fails on it
    state = single_part_state(conv, ema_every=2)
    start = {k: v.clone() for k, v in state.parts["p"]._ema.shadow.items()}
    state.update("p", conv(torch.randn(1, 1, 8)).pow(2).mean())  # step 0: no EMA update
    assert all(torch.equal(start[k], v) for k, v in state.parts["p"]._ema.shadow.items())
    state.step = 1
    state.update("p", conv(torch.randn(1, 1, 8)).pow(2).mean())  # step 1: EMA update
    assert not torch.equal(start["weight_v"], state.parts["p"]._ema.shadow["weight_v"])


def test_flatten_round_trips_optimizer_scheduler_and_rng_state_through_json():
    lin = nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1, betas=(0.8, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    state = {"opt": opt.state_dict(), "sched": sched.state_dict(), "rng": rng_state(), (1, 2): None, 3: [1.5]}
    state.pop((1, 2))
    skeleton, tensors = flatten(state)
    back = unflatten(json.loads(json.dumps(skeleton)), tensors)

    def same(a, b):
        assert type(a) is type(b), (a, b)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        elif isinstance(a, dict):
            assert list(a) == list(b)
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                same(x, y)
        else:
            assert a == b

    same(state, back)
    assert isinstance(back["opt"]["state"], dict) and 0 in back["opt"]["state"]
    with pytest.raises(TypeError, match="without pickle"):
        flatten({"bad": object()})


# ----------------------------------------------------------------------------- the loop in-process
@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_matches_an_uninterrupted_run(tmp_path, workers):
    straight = ToyTask()
    done = train(straight, loop_config(tmp_path / "a", tmp_path / "ra", num_workers=workers), RUN_CONFIG)
    assert done.finished and done.step == 12 and done.checkpoint.name == "step_12"

    stopped = train(ToyTask(signal_at=4), loop_config(tmp_path / "b", tmp_path / "rb", num_workers=workers), RUN_CONFIG)
    assert (stopped.stop_reason, stopped.step, stopped.finished) == ("signal", 5, False)
    assert latest_checkpoint(tmp_path / "b").name == "step_5"
    assert (tmp_path / "b" / "latest").read_text().strip() == "step_5"

    resumed = ToyTask()
    result = train(resumed, loop_config(tmp_path / "b", tmp_path / "rb", num_workers=workers), RUN_CONFIG)
    assert (result.resumed_from, result.step, result.finished) == (5, 12, True)
    assert weights_hash(resumed) == weights_hash(straight)
    for name in ("loss/net", "loss/critic", "grad_norm/net", "lr/critic", "valid/mse"):
        assert metric_rows(tmp_path / "rb", name) == metric_rows(tmp_path / "ra", name), name
    assert [r.split("\t")[0] for r in metric_rows(tmp_path / "rb", "loss/net")] == ["step", "2", "4", "6", "8", "10", "12"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["latest", "step_12", "step_8"]  # keep_checkpoints=2


def test_checkpoints_are_safetensors_and_json_and_load_without_pickle(tmp_path, monkeypatch):
    loop = loop_config(tmp_path / "out", tmp_path / "rep", max_steps=4)
    train(ToyTask(), loop, RUN_CONFIG)
    ckpt = latest_checkpoint(tmp_path / "out")
    assert sorted(p.name for p in ckpt.iterdir()) == ["critic.safetensors", "net.ema.safetensors", "net.safetensors",
                                                      "run_config.json", "state.json", "state.safetensors"]
    assert read_run_config(ckpt) == RUN_CONFIG

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle / torch.load used")

    for mod, name in [(torch, "load"), (pickle, "load"), (pickle, "loads")]:
        monkeypatch.setattr(mod, name, no_pickle)
    fresh = ToyTask()
    fresh.net.module.load_state_dict(load_part_weights(ckpt, "net", ema=True))
    assert torch.equal(fresh.net.module[0].weight, safetensors.torch.load_file(ckpt / "net.ema.safetensors")["0.weight"])
    with pytest.raises(FileNotFoundError, match="trained without EMA"):
        load_part_weights(ckpt, "critic")
    state = read_state(ckpt)
    assert state["step"] == 4 and set(state["optimizers"]) == {"net", "critic"}
    assert train(ToyTask(), loop_config(tmp_path / "out", tmp_path / "rep", max_steps=6), RUN_CONFIG).resumed_from == 4


def test_changed_run_config_refuses_to_resume(tmp_path):
    loop = loop_config(tmp_path / "out", tmp_path / "rep", max_steps=2)
    train(ToyTask(), loop, RUN_CONFIG)
    with pytest.raises(RuntimeError, match=r"model.hidden: 16 -> 32.*Delete .*out"):
        train(ToyTask(), loop, {**RUN_CONFIG, "model": {"hidden": 32}})


def test_time_budget_stops_with_a_checkpoint_and_a_finished_run_is_not_rerun(tmp_path):
    budget = train(ToyTask(), loop_config(tmp_path / "out", tmp_path / "rep", max_minutes=1e-9), RUN_CONFIG)
    assert (budget.stop_reason, budget.step, budget.checkpoint.name) == ("time_budget", 1, "step_1")
    loop = loop_config(tmp_path / "out", tmp_path / "rep")
    assert train(ToyTask(), loop, RUN_CONFIG).step == 12
    again = train(ToyTask(), loop, RUN_CONFIG)
    assert (again.resumed_from, again.step, again.finished, again.checkpoint.name) == (12, 12, True, "step_12")


# ----------------------------------------------------------------------------- subprocesses
def test_sigterm_saves_after_the_current_step_exits_0_and_resumes(tmp_path):
    out, rep = tmp_path / "out", tmp_path / "rep"
    spec = {"loop": {"out_dir": str(out), "report_dir": str(rep), "max_steps": 30, "checkpoint_every": 3}, "sleep": 0.05}
    proc = subprocess.Popen(toy_script(spec), cwd=PROJECT_ROOT, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "latest").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["stop_reason"] == "signal" and 3 <= result["step"] < 30
    assert latest_checkpoint(out).name == f"step_{result['step']}"

    resumed = train(ToyTask(), loop_config(out, rep, max_steps=30, checkpoint_every=3), RUN_CONFIG)
    assert (resumed.resumed_from, resumed.step, resumed.finished) == (result["step"], 30, True)


def test_sigkill_while_saving_resumes_from_the_last_complete_checkpoint(tmp_path):
    out, rep = tmp_path / "out", tmp_path / "rep"
    spec = {"loop": {"out_dir": str(out), "report_dir": str(rep)}, "kill_in_save_at": 8}
    proc = subprocess.run(toy_script(spec), cwd=PROJECT_ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "step_8.tmp").is_dir() and not (out / "step_8").exists()
    assert (out / "latest").read_text().strip() == "step_4" and latest_checkpoint(out).name == "step_4"

    resumed = ToyTask()
    result = train(resumed, loop_config(out, rep), RUN_CONFIG)
    assert (result.resumed_from, result.step) == (4, 12)
    assert not list(out.glob("*.tmp"))
    straight = ToyTask()
    train(straight, loop_config(tmp_path / "s", tmp_path / "rs"), RUN_CONFIG)
    assert weights_hash(resumed) == weights_hash(straight)
    assert metric_rows(rep, "loss/net") == metric_rows(tmp_path / "rs", "loss/net")  # the killed run's later rows dropped


def test_torchrun_two_cpu_ranks_end_with_identical_weights(tmp_path):
    out, rep = tmp_path / "out", tmp_path / "rep"
    spec = {"loop": {"out_dir": str(out), "report_dir": str(rep), "max_steps": 6, "checkpoint_every": 3},
            "hash_file": str(tmp_path / "hash_{rank}.txt")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] + toy_script(spec)[1:]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=child_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hashes = [(tmp_path / f"hash_{r}.txt").read_text() for r in range(2)]
    assert hashes[0] == hashes[1]
    state = read_state(latest_checkpoint(out))
    assert (state["step"], state["world_size"], len(state["rng"])) == (6, 2, 2)
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # ranks seeded apart
