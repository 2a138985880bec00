"""The loop's memory pre-flight (dmospeech/ops/memory.py): byte counts, the early stop with its numbers,
the EMA swap without a model copy, and checkpoints written without copying the state."""
import pytest
import torch
from torch import nn

from dmospeech.ops import checkpoint
from dmospeech.ops.memory import (BUDGET_ENV, GIB, MemoryBudgetError, PartMemory, borrowed_state, check,
                                  module_memory, on_meta, preflight)
from dmospeech.ops.training import EMA, Part
from tests.helpers import params


def test_bytes_per_kind_follow_adamw_and_ema():
    part = PartMemory("net", trainable=1000, frozen=200, ema=True)
    assert (part.weights, part.gradients, part.optimizer_state, part.ema_bytes) == (4800, 4000, 8000, 4800)
    frozen = PartMemory("teacher", trainable=0, frozen=1000, ema=False, optimised=False)
    assert frozen.total == 4000


def test_module_memory_counts_meta_modules_and_frozen_parameters_once():
    net = on_meta(lambda: nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2)))
    net[1].requires_grad_(False)
    plan = module_memory("net", net, ema=False)
    assert (plan.trainable, plan.frozen) == (110, 22) and net[0].weight.device.type == "meta"
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert module_memory("tied", tied, ema=False).trainable == 16


def test_check_stops_with_the_numbers_and_what_to_do(monkeypatch):
    plan = [PartMemory("generator", trainable=GIB // 4, frozen=0, ema=True),   # 5 GiB
            PartMemory("teacher", trainable=0, frozen=GIB // 4, ema=False, optimised=False, allocated=True)]
    monkeypatch.setenv(BUDGET_ENV, "3")
    with pytest.raises(MemoryBudgetError) as err:
        check("distill_student", plan, torch.device("cpu"))
    text = str(err.value)
    assert "needs 6.00 GiB" in text and "1.00 GiB of it already allocated" in text and "3.00 GiB" in text
    assert "generator" in text and "GPU" in text and BUDGET_ENV in text
    monkeypatch.setenv(BUDGET_ENV, "5.5")
    check("distill_student", plan, torch.device("cpu"))          # 5 GiB still to allocate: fits
    monkeypatch.setenv(BUDGET_ENV, "0")
    check("distill_student", plan * 100, torch.device("cpu"))    # check off


def test_the_student_stops_before_building_its_networks(monkeypatch):
    from tests.unit.test_student import make_task

    task, *_ = make_task()
    names = [p.name for p in task.memory_plan()]
    assert names == ["generator", "score", "discriminator", "teacher", "asr_critic", "sv_critic"]
    monkeypatch.setenv(BUDGET_ENV, "0.0001")
    task._parts = {}
    with pytest.raises(MemoryBudgetError, match="not enough memory"):
        preflight(task, torch.device("cpu"), "distill_student")
    assert task._parts == {}                                      # nothing was built


def test_preflight_of_a_task_without_a_plan_uses_its_built_parts(monkeypatch):
    cfg = params().train_teacher.optimizer
    parts = [Part("net", nn.Linear(1000, 1000), cfg)]             # 4 MB of weights, 20 MB in all
    monkeypatch.setenv(BUDGET_ENV, str(10e6 / GIB))
    with pytest.raises(MemoryBudgetError):
        preflight(object(), torch.device("cpu"), "toy", parts)
    monkeypatch.setenv(BUDGET_ENV, str(17e6 / GIB))               # 16 MB still to allocate
    preflight(object(), torch.device("cpu"), "toy", parts)


def test_ema_swap_borrows_the_shadow_and_restores_exactly():
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = EMA(net)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped() as swapped:
        assert all(torch.equal(swapped.state_dict()[k], ema.shadow[k]) for k in trained)
        assert net[0].weight.data_ptr() == ema.shadow["0.weight"].data_ptr()     # borrowed, not copied
    assert all(torch.equal(net.state_dict()[k], v) for k, v in trained.items())
    with borrowed_state(net, ema.shadow):
        pass
    assert all(torch.equal(net.state_dict()[k], v) for k, v in trained.items())


def test_checkpoint_writes_whole_cpu_tensors_without_copying_them():
    whole, view = torch.randn(4, 4), torch.randn(8)[2:6]
    out = checkpoint._cpu({"whole": whole, "view": view, "again": whole, "t": whole.t()})
    assert out["whole"].data_ptr() == whole.data_ptr()            # no copy of the state
    assert out["view"].data_ptr() != view.data_ptr() and torch.equal(out["view"], view)
    assert out["again"].data_ptr() != whole.data_ptr() and out["t"].is_contiguous()
