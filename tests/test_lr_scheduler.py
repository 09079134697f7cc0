"""Learning-rate schedulers vs torch.optim.lr_scheduler (and transformers' warmup schedules), step by step."""
import math

import numpy as np
import pytest
import torch
import transformers

import nnforge as nf
from nnforge.optim import lr_scheduler as nls

STEPS = 40


def _pair(opt_name="SGD", groups=1, **kw):
    kw.setdefault("lr", 0.1)
    nf_groups = [{"params": [nf.nn.Parameter(nf.zeros(2))], "lr": kw["lr"] * (i + 1)} for i in range(groups)]
    t_groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": kw["lr"] * (i + 1)} for i in range(groups)]
    return getattr(nf.optim, opt_name)(nf_groups, **kw), getattr(torch.optim, opt_name)(t_groups, **kw)


def _run(nf_sched, t_sched, nf_opt, t_opt, steps=STEPS, key=None):
    seq, tseq = [nf_sched.get_last_lr()], [t_sched.get_last_lr()]
    moms, tmoms = [], []
    for _ in range(steps):
        nf_opt.step()
        t_opt.step()
        nf_sched.step()
        t_sched.step()
        seq.append(nf_sched.get_last_lr())
        tseq.append(t_sched.get_last_lr())
        if key:
            moms.append([g[key] if key == "momentum" else g[key][0] for g in nf_opt.param_groups])
            tmoms.append([g[key] if key == "momentum" else g[key][0] for g in t_opt.param_groups])
    np.testing.assert_allclose(seq, tseq, rtol=1e-12, atol=1e-15)
    assert [g["lr"] for g in nf_opt.param_groups] == pytest.approx([g["lr"] for g in t_opt.param_groups])
    if key:
        np.testing.assert_allclose(moms, tmoms, rtol=1e-12)


CASES = [
    ("LambdaLR", dict(lr_lambda=lambda e: 0.97 ** e + 0.01 * (e % 3))),
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.93)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=40)),
    ("LinearLR", dict(start_factor=0.25, end_factor=1.0, total_iters=12)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.1, total_iters=30)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_schedule_matches_torch(name, kw):
    nf_opt, t_opt = _pair(groups=2)
    _run(getattr(nls, name)(nf_opt, **kw), getattr(torch.optim.lr_scheduler, name)(t_opt, **kw), nf_opt, t_opt)


@pytest.mark.parametrize("opt_name,key,kw", [
    ("SGD", "momentum", dict(anneal_strategy="cos")),
    ("SGD", "momentum", dict(anneal_strategy="linear", three_phase=True, pct_start=0.25)),
    ("Adam", "betas", dict(anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0)),
    ("AdamW", "betas", dict(cycle_momentum=True, base_momentum=0.8, max_momentum=0.9)),
])
def test_one_cycle_lr_and_momentum(opt_name, key, kw):
    extra = {"momentum": 0.9} if opt_name == "SGD" else {}
    nf_opt, t_opt = _pair(opt_name, groups=2, **extra)
    s = nls.OneCycleLR(nf_opt, max_lr=[0.5, 1.0], total_steps=STEPS, **kw)
    ts = torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=[0.5, 1.0], total_steps=STEPS, **kw)
    _run(s, ts, nf_opt, t_opt, steps=STEPS - 1, key=key)
    with pytest.raises(ValueError, match="total_steps"):
        nf_opt.step()
        s.step()
        s.step()


def test_one_cycle_errors():
    nf_opt, _ = _pair("Adagrad")
    with pytest.raises(ValueError, match="momentum"):
        nls.OneCycleLR(nf_opt, max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        nls.OneCycleLR(nf_opt, max_lr=0.1, cycle_momentum=False)


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1),
                                dict(patience=1, cooldown=2, min_lr=0.02, threshold_mode="abs", threshold=0.05),
                                dict(patience=0, factor=0.5, eps=0.01)])
def test_reduce_lr_on_plateau(kw):
    nf_opt, t_opt = _pair(groups=2)
    s = nls.ReduceLROnPlateau(nf_opt, **kw)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.91, 0.9, 0.89, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95,
               0.5, 0.6, 0.6, 0.6, 0.7, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    lrs, tlrs = [], []
    for m in metrics:
        s.step(m)
        ts.step(m)
        lrs.append(s.get_last_lr())
        tlrs.append(ts.get_last_lr())
    np.testing.assert_allclose(lrs, tlrs, rtol=1e-12)
    assert len({tuple(x) for x in lrs}) > 1  # the scripted metric does trigger reductions


@pytest.mark.parametrize("warmup,total", [(5, 40), (0, 30), (10, 10)])
def test_linear_warmup_matches_transformers(warmup, total):
    nf_opt, t_opt = _pair("AdamW", groups=2, lr=3e-4)
    _run(nls.get_linear_schedule_with_warmup(nf_opt, warmup, total),
         transformers.get_linear_schedule_with_warmup(t_opt, warmup, total), nf_opt, t_opt, steps=total + 3)


@pytest.mark.parametrize("warmup,total,cycles", [(5, 40, 0.5), (3, 30, 1.5), (0, 32, 0.5)])
def test_cosine_warmup_matches_transformers(warmup, total, cycles):
    nf_opt, t_opt = _pair("AdamW", groups=1, lr=3e-4)
    _run(nls.get_cosine_schedule_with_warmup(nf_opt, warmup, total, num_cycles=cycles),
         transformers.get_cosine_schedule_with_warmup(t_opt, warmup, total, num_cycles=cycles),
         nf_opt, t_opt, steps=total)


def test_warmup_formula_values():
    nf_opt, _ = _pair(lr=1.0)
    s = nls.get_linear_schedule_with_warmup(nf_opt, num_warmup_steps=4, num_training_steps=12)
    seen = [s.get_last_lr()[0]]
    for _ in range(13):
        s.step()
        seen.append(s.get_last_lr()[0])
    expected = [t / 4 for t in range(4)] + [max(0.0, (12 - t) / 8) for t in range(4, 14)]
    assert seen == pytest.approx(expected)


def test_state_dict_round_trip_and_resume():
    nf_opt, t_opt = _pair()
    s = nls.CosineAnnealingLR(nf_opt, T_max=15, eta_min=0.01)
    for _ in range(6):
        nf_opt.step()
        s.step()
    sd = s.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 6
    osd = nf_opt.state_dict()
    assert osd["param_groups"][0]["initial_lr"] == 0.1
    rest = [s.step() or s.get_last_lr()[0] for _ in range(10)]
    opt2, _ = _pair()
    opt2.load_state_dict(osd)
    s2 = nls.CosineAnnealingLR(opt2, T_max=15, eta_min=0.01, last_epoch=sd["last_epoch"])
    s2.load_state_dict(sd)
    opt2.param_groups[0]["lr"] = sd["_last_lr"][0]
    assert [s2.step() or s2.get_last_lr()[0] for _ in range(10)] == pytest.approx(rest, rel=1e-12)


def test_lambda_state_dict_keeps_callable_objects_state():
    class Scale:
        def __init__(self):
            self.factor = 0.5

        def __call__(self, e):
            return self.factor ** e

    nf_opt, _ = _pair()
    fn = Scale()
    s = nls.LambdaLR(nf_opt, fn)
    fn.factor = 0.25
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [{"factor": 0.25}]
    fn2 = Scale()
    s2 = nls.LambdaLR(_pair()[0], fn2)
    s2.load_state_dict(sd)
    assert fn2.factor == 0.25
    assert nls.LambdaLR(_pair()[0], lambda e: 1.0).state_dict()["lr_lambdas"] == [None]


def test_resume_without_initial_lr_raises():
    nf_opt, _ = _pair()
    with pytest.raises(KeyError, match="initial_lr"):
        nls.StepLR(nf_opt, step_size=3, last_epoch=5)
    with pytest.raises(ValueError, match="lr_lambdas"):
        nls.LambdaLR(_pair(groups=2)[0], [lambda e: 1.0])
    with pytest.raises(TypeError, match="not an Optimizer"):
        nls.StepLR(object(), step_size=2)


def test_closed_form_epoch_argument():
    nf_opt, _ = _pair(lr=1.0)
    s = nls.StepLR(nf_opt, step_size=3, gamma=0.5)
    s.step(7)
    assert s.get_last_lr()[0] == pytest.approx(0.25)
    c = nls.CosineAnnealingLR(_pair(lr=1.0)[0], T_max=10)
    c.step(5)
    assert c.get_last_lr()[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
