"""Run under ``mpirun -n 2``: exercises nnforge.distributed and DistributedDataParallel, rank 0 writes results
into OUT for tests/test_distributed.py to check. ``python worker.py OUT MODE [MODE ...]``.

Modes: collectives, ddp, nosync, frozen, lora, trainer, fit (results), fail, hang (error handling)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import nnforge as nf
import nnforge.distributed as dist
from nnforge.nn.parallel import DistributedDataParallel
from nnforge.utils.data import DistributedSampler


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(f"rank {dist.get_rank()}: {what}")


def collectives(out: Path) -> None:
    rank, size = dist.get_rank(), dist.get_world_size()
    t = nf.tensor([1.0, 2.0, 3.0]) * (rank + 1)
    dist.all_reduce(t)
    check(np.allclose(t.numpy(), [3, 6, 9]), f"all_reduce sum {t.numpy()}")
    t = nf.tensor([1.0, 2.0]) * (rank + 1)
    dist.all_reduce(t, op="avg")
    check(np.allclose(t.numpy(), [1.5, 3.0]), f"all_reduce avg {t.numpy()}")
    t = nf.tensor([rank, -rank], dtype=nf.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    check(t.tolist() == [1, 0] and t.dtype == np.int64, f"all_reduce max {t}")
    t = nf.tensor([rank, -rank], dtype=nf.int64)
    dist.all_reduce(t, op="min")
    check(t.tolist() == [0, -1], f"all_reduce min {t}")
    base = nf.arange(12, dtype=nf.float32).reshape(3, 4) * (rank + 1)
    view = base.t()  # not contiguous: reduced through a copy, written back
    dist.all_reduce(view)
    check(np.allclose(base.numpy(), np.arange(12).reshape(3, 4) * 3), "all_reduce of a non-contiguous view")
    t = nf.full((2, 3), float(rank))
    dist.broadcast(t, src=1)
    check(np.all(t.numpy() == 1.0), f"broadcast src=1 {t.numpy()}")
    parts = [nf.zeros(2, dtype=nf.int32) for _ in range(size)]
    dist.all_gather(parts, nf.tensor([rank, 10 * rank], dtype=nf.int32))
    check([p.tolist() for p in parts] == [[0, 0], [1, 10]], f"all_gather {parts}")
    dist.barrier()
    errors = {}
    for name, fn in (("bad_op", lambda: dist.all_reduce(nf.ones(2), op="median")),
                     ("avg_int", lambda: dist.all_reduce(nf.ones(2, dtype=nf.int64), op="avg")),
                     ("gather_len", lambda: dist.all_gather([nf.ones(2)], nf.ones(2))),
                     ("bad_src", lambda: dist.broadcast(nf.ones(2), src=5))):
        try:
            fn()
        except (ValueError, TypeError) as e:
            errors[name] = str(e)
    if rank == 0:
        (out / "collectives.json").write_text(json.dumps({"ok": True, "errors": errors}))


def ddp(out: Path) -> None:
    """Ranks start from different weights; 6 SGD-momentum steps on each rank's half of a global batch."""
    rank = dist.get_rank()
    nf.manual_seed(100 + rank)
    model = common.Net()
    before = model.fc1.weight.detach().clone()
    others = [nf.zeros(before.shape) for _ in range(2)]
    dist.all_gather(others, before)
    check(not np.allclose(others[0].numpy(), others[1].numpy()), "ranks should start from different weights")
    ddp_model = DistributedDataParallel(model, bucket_cap_mb=0.0002)  # tiny buckets: many messages, out of order
    check(len(ddp_model._reducer.buckets) > 2, "several buckets")
    dist.all_gather(others, model.fc1.weight.detach())
    check(np.array_equal(others[0].numpy(), others[1].numpy()), "ranks agree after wrapping")
    opt = nf.optim.SGD(ddp_model.parameters(), lr=0.1, momentum=0.9)
    sampler = DistributedSampler(range(common.BATCH), shuffle=False)
    idx = list(sampler)
    for step in range(common.STEPS):
        x, y = common.batch(step)
        opt.zero_grad()
        loss = common.loss_fn(ddp_model(x[idx]), y[idx])
        loss.backward()
        check(model.unused.weight.grad is None, "a parameter no rank used keeps grad None")
        opt.step()
    if rank == 0:
        nf.save(model.state_dict(), out / "ddp.safetensors")


def nosync(out: Path) -> None:
    """Two micro-batches per step, the first under no_sync: equals the full batch."""
    rank = dist.get_rank()
    nf.manual_seed(100 + rank)
    model = common.Net()
    ddp_model = DistributedDataParallel(model)
    opt = nf.optim.SGD(ddp_model.parameters(), lr=0.1, momentum=0.9)
    idx = list(DistributedSampler(range(common.BATCH), shuffle=False))
    half = len(idx) // 2
    for step in range(common.STEPS):
        x, y = common.batch(step)
        opt.zero_grad()
        with ddp_model.no_sync():
            (common.loss_fn(ddp_model(x[idx[:half]]), y[idx[:half]]) * 0.5).backward()
        local = model.fc1.weight.grad.detach().clone()
        others = [nf.zeros(local.shape) for _ in range(2)]
        dist.all_gather(others, local)
        check(not np.allclose(others[0].numpy(), others[1].numpy()), "no_sync must not all-reduce")
        (common.loss_fn(ddp_model(x[idx[half:]]), y[idx[half:]]) * 0.5).backward()
        opt.step()
    if rank == 0:
        nf.save(model.state_dict(), out / "nosync.safetensors")


def frozen(out: Path) -> None:
    rank = dist.get_rank()
    nf.manual_seed(100 + rank)
    model = common.Net()
    model.fc1.weight.requires_grad_(False)
    ddp_model = DistributedDataParallel(model)
    check(all(p is not model.fc1.weight for p in ddp_model._reducer.params), "frozen parameters are skipped")
    opt = nf.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    idx = list(DistributedSampler(range(common.BATCH), shuffle=False))
    for step in range(common.STEPS):
        x, y = common.batch(step)
        opt.zero_grad()
        common.loss_fn(ddp_model(x[idx]), y[idx]).backward()
        check(model.fc1.weight.grad is None, "frozen weight gets no grad")
        opt.step()
    if rank == 0:
        nf.save(model.state_dict(), out / "frozen.safetensors")


def lora(out: Path) -> None:
    rank = dist.get_rank()
    nf.manual_seed(100 + rank)
    model = common.lora_net()
    ddp_model = DistributedDataParallel(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    check(len(ddp_model._reducer.params) == len(trainable), "only the adapters are reduced")
    opt = nf.optim.SGD(trainable, lr=0.1, momentum=0.9)
    idx = list(DistributedSampler(range(common.BATCH), shuffle=False))
    for step in range(common.STEPS):
        x, y = common.batch(step)
        opt.zero_grad()
        common.loss_fn(ddp_model(x[idx]), y[idx]).backward()
        opt.step()
    if rank == 0:
        nf.save(model.state_dict(), out / "lora.safetensors")


def trainer(out: Path) -> None:
    """Trainer on 2 ranks with batch B == Trainer on 1 process with batch 2B (same data order)."""
    rank = dist.get_rank()
    nf.manual_seed(100 + rank)
    model = common.Net()
    t = common.make_trainer(model, batch_size=common.BATCH // 4, output_dir=out / f"trainer-rank{rank}",
                            accumulation=2)
    result = t.train()
    check(t._ddp is not None and len(t._shard(list(range(10)))) == 5, "the Trainer shards the data")
    if rank == 0:
        nf.save(model.state_dict(), out / "trainer.safetensors")
        (out / "trainer.json").write_text(json.dumps({"loss": result["train_loss"],
                                                      "steps": result["global_step"]}))


def fit(out: Path) -> None:
    rank = dist.get_rank()
    nf.manual_seed(100 + rank)
    model = common.Net()
    history = common.run_fit(model, batch_size=common.BATCH // 2, verbose=1)
    if rank == 0:
        nf.save(model.state_dict(), out / "fit.safetensors")
        (out / "fit.json").write_text(json.dumps(history.history))


def fail(out: Path) -> None:
    dist.barrier()
    if dist.get_rank() == 1:
        raise ValueError("deliberate failure in the test worker")
    dist.all_reduce(nf.ones(4))  # rank 0 waits here until rank 1's abort ends it
    time.sleep(60)


def hang(out: Path) -> None:
    dist.barrier()
    if dist.get_rank() == 1:
        time.sleep(30)  # never joins the all_reduce: rank 0 times out
    dist.all_reduce(nf.ones(4))


def main() -> None:
    out, modes = Path(sys.argv[1]), sys.argv[2:]
    dist.init_process_group(timeout=float(common.TIMEOUT) if "hang" in modes else None)
    for mode in modes:
        globals()[mode](out)
        dist.barrier()
    if dist.get_rank() == 0:
        (out / "done").write_text(" ".join(modes))


if __name__ == "__main__":
    main()
