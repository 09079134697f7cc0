"""Arithmetic ops vs PyTorch: forward, gradients, broadcasting, 0-d / zero-size / non-contiguous inputs,
dtype promotion, errors, and float64 gradchecks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from helpers import check_op, gradcheck

BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((2, 1, 4), (3, 1)),
    ((5, 1), (1, 6)),
    ((), (3,)),
    ((3, 2), ()),
    ((), ()),
    ((0, 3), (3,)),
    ((2, 0), (1,)),
    ((1,), (0,)),
]

BINARY = {
    "add": (nf.add, torch.add),
    "sub": (nf.sub, torch.sub),
    "mul": (nf.mul, torch.mul),
    "div": (nf.div, torch.div),
    "op+": (lambda a, b: a + b, lambda a, b: a + b),
    "op-": (lambda a, b: a - b, lambda a, b: a - b),
    "op*": (lambda a, b: a * b, lambda a, b: a * b),
    "op/": (lambda a, b: a / b, lambda a, b: a / b),
    "maximum": (nf.maximum, torch.maximum),
    "minimum": (nf.minimum, torch.minimum),
}


@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
def test_binary_broadcast(name, shapes):
    nf_fn, torch_fn = BINARY[name]
    low = 0.5 if name in ("div", "op/") else -2.0  # keep divisors away from 0
    check_op(nf_fn, torch_fn, shapes, low=low, high=2.0)


@pytest.mark.parametrize("name", ["add", "mul", "div", "sub", "maximum"])
@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_binary_noncontiguous(name, layout):
    nf_fn, torch_fn = BINARY[name]
    check_op(nf_fn, torch_fn, [(4, 5), (4, 5)], low=0.5, layout=layout)
    check_op(nf_fn, torch_fn, [(3, 4, 5), (5,)], low=0.5, layout=layout)


def test_add_sub_alpha():
    check_op(lambda a, b: nf.add(a, b, alpha=2.5), lambda a, b: torch.add(a, b, alpha=2.5), [(3, 4), (4,)])
    check_op(lambda a, b: nf.sub(a, b, alpha=-3), lambda a, b: torch.sub(a, b, alpha=-3), [(3, 4), (3, 1)])


def test_same_tensor_twice():
    check_op(lambda a: a * a + a, None, [(3, 4)])
    check_op(lambda a: a / a - a * 3, None, [(3,)], low=0.5)


@pytest.mark.parametrize("scalar", [2, 2.5, -1.5, 0])
def test_scalar_operands(scalar):
    check_op(lambda a: a + scalar, None, [(3, 4)])
    check_op(lambda a: scalar + a, None, [(3, 4)])
    check_op(lambda a: a - scalar, None, [(3, 4)])
    check_op(lambda a: scalar - a, None, [(3, 4)])
    check_op(lambda a: a * scalar, None, [(3, 4)])
    check_op(lambda a: scalar * a, None, [(3, 4)])
    check_op(lambda a: scalar / a, None, [(3, 4)], low=0.5, grad_rtol=5e-4)
    if scalar:
        check_op(lambda a: a / scalar, None, [(3, 4)])
    check_op(lambda a: -a, None, [(3, 4)])
    check_op(lambda a: +a, None, [(3, 4)])
    check_op(nf.neg, torch.neg, [()])


def test_numpy_scalar_and_array_operands():
    check_op(lambda a: a * np.float32(1.5) + np.float64(2.0), lambda a: a * 1.5 + 2.0, [(3,)])
    arr = np.arange(4, dtype=np.float32)
    check_op(lambda a: a + arr, lambda a: a + torch.from_numpy(arr), [(3, 4)])
    check_op(lambda a: arr * a, lambda a: torch.from_numpy(arr) * a, [(3, 4)])


@pytest.mark.parametrize("c", [2, 3, 0.5, -1, 1, 0, 2.5, -2, -0.5, 4])
def test_pow_scalar_exponent(c):
    check_op(lambda a: a ** c, None, [(3, 4)], low=0.5, high=2.0, grad_rtol=5e-4)
    check_op(lambda a: nf.pow(a, c), lambda a: torch.pow(a, c), [()], low=0.5, high=2.0, grad_rtol=5e-4)


def test_pow_integer_exponent_negative_base():
    for c in (2, 3, -1, 4):
        check_op(lambda a: a ** c, None, [(3, 4)], low=-2.0, high=-0.5, grad_rtol=5e-4)


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((), (2, 3)), ((0, 2), (2,))], ids=str)
def test_pow_tensor_exponent(shapes):
    check_op(nf.pow, torch.pow, shapes, low=0.5, high=2.0, grad_rtol=5e-4)


def test_rpow():
    check_op(lambda a: 2 ** a, None, [(3, 4)], grad_rtol=5e-4)
    check_op(lambda a: 2.5 ** a, None, [()], grad_rtol=5e-4)


def test_pow_zero_base():
    base = np.array([0.0, 0.0, 1.0, 2.0], dtype=np.float32)
    expo = np.array([2.0, 0.0, 1.5, 0.5], dtype=np.float32)
    check_op(nf.pow, torch.pow, [base, expo])


def test_pow_dtypes():
    i = nf.tensor([1, 2, 3])
    assert (i ** 2).dtype == nf.int64 and (i ** 2).tolist() == [1, 4, 9]
    assert (i ** 0.5).dtype == nf.float32
    assert (i ** nf.tensor(2.0)).dtype == nf.float32
    assert (nf.tensor([2.0]) ** 2).dtype == nf.float32
    assert (nf.tensor([2.0], dtype=nf.float64) ** 2.5).dtype == nf.float64
    with pytest.raises(RuntimeError, match="negative"):
        i ** -1


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (3, 4, 5)),
    ((5,), (2, 5, 3)),
    ((2, 3, 5), (5,)),
    ((4, 5), (2, 5, 3)),
    ((0, 4), (4, 5)),
    ((3, 0), (0, 5)),
    ((2, 0, 4), (4, 3)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes):
    check_op(nf.matmul, torch.matmul, shapes, atol=1e-5, rtol=1e-5)
    check_op(lambda a, b: a @ b, lambda a, b: a @ b, shapes)


@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_matmul_noncontiguous(layout):
    check_op(nf.matmul, torch.matmul, [(6, 5), (5, 7)], layout=layout)
    check_op(nf.matmul, torch.matmul, [(2, 6, 5), (5, 7)], layout=layout)


def test_matmul_with_transposed_views():
    check_op(lambda a, b: a.T @ b.transpose(0, 1), lambda a, b: a.T @ b.transpose(0, 1), [(5, 3), (4, 5)])


def test_rmatmul_numpy():
    w = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    check_op(lambda a: w @ a, lambda a: torch.from_numpy(w) @ a, [(3, 4)])


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((), (3,))], ids=str)
def test_remainder_and_floor_divide(shapes):
    check_op(nf.remainder, torch.remainder, shapes, low=-5, high=5)
    check_op(lambda a, b: a % b, lambda a, b: a % b, shapes, low=-5, high=5)
    check_op(lambda a, b: a // b, lambda a, b: a // b, shapes, low=-5, high=5, grad=False)
    check_op(nf.floor_divide, torch.floor_divide, shapes, low=-5, high=5, grad=False)


def test_remainder_sign_and_scalars():
    a = np.array([-7.0, -1.5, 0.0, 3.0, 7.5], dtype=np.float32)
    check_op(lambda x: x % 2, None, [a])
    check_op(lambda x: x % -2, None, [a])
    # torch has no derivative of remainder w.r.t. the divisor; nnforge's (-floor(a/b)) is gradchecked below
    check_op(lambda x: 5 % x, None, [np.array([2.0, -3.0, 1.5], dtype=np.float32)], grad=False)
    ai = nf.tensor([-7, -1, 0, 3, 7])
    assert (ai % 3).tolist() == (torch.tensor([-7, -1, 0, 3, 7]) % 3).tolist()
    assert (ai // 2).tolist() == (torch.tensor([-7, -1, 0, 3, 7]) // 2).tolist()
    assert (ai // 2).dtype == nf.int64


def test_div_rounding_modes():
    a = np.array([-7.5, -1.0, 3.0, 7.5], dtype=np.float32)
    b = np.array([2.0, -3.0, 2.0, -2.0], dtype=np.float32)
    for mode in ("floor", "trunc"):
        check_op(lambda x, y: nf.div(x, y, rounding_mode=mode), lambda x, y: torch.div(x, y, rounding_mode=mode),
                 [a, b], grad=False)
    ai = nf.tensor([-7, 7])
    assert nf.div(ai, 2, rounding_mode="trunc").tolist() == [-3, 3]
    assert nf.div(ai, 2, rounding_mode="floor").tolist() == [-4, 3]
    with pytest.raises(ValueError, match="rounding_mode"):
        nf.div(ai, 2, rounding_mode="round")


def test_comparisons():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, (3, 4)).astype(np.float32)
    b = rng.integers(0, 3, (4,)).astype(np.float32)
    for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
        out = getattr(nf.tensor(a), op)(nf.tensor(b))
        ref = getattr(torch.tensor(a), op)(torch.tensor(b))
        assert out.dtype == nf.bool and not out.requires_grad
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
    x = nf.tensor(a, requires_grad=True)
    assert not (x > 1).requires_grad
    np.testing.assert_array_equal((x == 1.0).numpy(), a == 1.0)
    np.testing.assert_array_equal((1.0 < x).numpy(), 1.0 < a)
    for name in ("eq", "ne", "lt", "le", "gt", "ge"):
        np.testing.assert_array_equal(getattr(nf, name)(nf.tensor(a), 1.0).numpy(),
                                      getattr(torch, name)(torch.tensor(a), 1.0).numpy())
    m1, m2 = nf.tensor([True, False, True]), nf.tensor([True, True, False])
    assert (m1 & m2).tolist() == [True, False, False]
    assert (m1 | m2).tolist() == [True, True, True]
    assert (m1 ^ m2).tolist() == [False, True, True]
    assert (~m1).tolist() == [False, True, False]
    with pytest.raises(RuntimeError, match=r"\(3,\).*\(2,\)"):
        nf.tensor([1.0, 2.0, 3.0]) < nf.tensor([1.0, 2.0])


# -- dtype promotion (torch.result_type rules) ---------------------------------------------------------
def _pair(dt_a, shape_a, dt_b, shape_b):
    a = np.ones(shape_a, dtype=dt_a)
    b = np.ones(shape_b, dtype=dt_b)
    return (nf.tensor(a), nf.tensor(b)), (torch.tensor(a), torch.tensor(b))


PROMOTIONS = [
    ("float32", (3,), "float64", (3,)),
    ("float32", (3,), "float64", ()),
    ("float64", (), "float32", (3,)),
    ("int64", (3,), "float32", (3,)),
    ("int32", (3,), "int64", ()),
    ("int32", (3,), "int64", (3,)),
    ("int64", (3,), "float64", ()),
    ("bool", (3,), "int32", (3,)),
    ("bool", (3,), "float32", ()),
    ("float16", (3,), "float32", ()),
    ("float16", (3,), "float32", (3,)),
    ("uint8", (3,), "int8", (3,)),
    ("int32", (), "float64", ()),
]


@pytest.mark.parametrize("dts", PROMOTIONS, ids=str)
def test_result_type_of_mixed_tensors(dts):
    (a, b), (ta, tb) = _pair(*dts)
    for op in ("__add__", "__mul__", "__sub__") if "bool" not in dts else ("__add__", "__mul__"):
        out, ref = getattr(a, op)(b), getattr(ta, op)(tb)
        assert out.dtype.name == str(ref.dtype).removeprefix("torch."), (op, dts)


@pytest.mark.parametrize("dt,scalar", [("float32", 2.5), ("float32", 2), ("float64", 2.5), ("float16", 1.5),
                                       ("int64", 2), ("int32", 2), ("int64", 1.5), ("int32", 1.5),
                                       ("bool", 1), ("bool", 1.5), ("bool", True), ("uint8", 3)])
def test_python_scalar_promotion(dt, scalar):
    a = nf.tensor(np.ones(3, dtype=dt))
    ta = torch.tensor(np.ones(3, dtype=dt))
    for op in ("__add__", "__mul__", "__radd__", "__rmul__"):
        assert getattr(a, op)(scalar).dtype.name == str(getattr(ta, op)(scalar).dtype).removeprefix("torch.")


def test_true_division_of_ints_is_float32():
    a, b = nf.tensor([1, 2, 3]), nf.tensor([2, 2, 2])
    assert (a / b).dtype == nf.float32 and (a / b).tolist() == [0.5, 1.0, 1.5]
    assert (a / 2).dtype == nf.float32
    assert (2 / a).dtype == nf.float32
    assert nf.tensor([1, 2], dtype=nf.int32).div(nf.tensor([2, 4], dtype=nf.int32)).dtype == nf.float32
    assert (nf.tensor([1.0], dtype=nf.float64) / a[:1]).dtype == nf.float64


def test_float32_stays_float32_with_float64_scalars():
    x = nf.randn(3, requires_grad=True)
    y = x * np.float64(0.5) + 1e-3 - 2.0 * x / 3.0
    assert y.dtype == nf.float32
    y.sum().backward()
    assert x.grad.dtype == nf.float32


def test_mixed_dtype_grads_have_input_dtypes():
    a = nf.randn(3, requires_grad=True)
    b = nf.randn(3, dtype=nf.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == nf.float32 and b.grad.dtype == nf.float64
    np.testing.assert_allclose(a.grad.numpy(), b.detach().numpy().astype(np.float32), rtol=1e-6)


# -- errors that help ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op,name", [(nf.add, "add"), (nf.sub, "sub"), (nf.mul, "mul"), (nf.div, "div"),
                                     (nf.pow, "pow"), (nf.remainder, "remainder"), (nf.maximum, "maximum")])
def test_broadcast_error_names_op_and_shapes(op, name):
    with pytest.raises(RuntimeError, match=rf"{name}.*\(2, 3\).*\(4,\)"):
        op(nf.ones(2, 3), nf.ones(4))


def test_matmul_errors():
    with pytest.raises(RuntimeError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        nf.ones(2, 3) @ nf.ones(4, 5)
    with pytest.raises(RuntimeError, match=r"matmul.*\(2, 3, 4\).*\(3, 4, 5\)"):
        nf.ones(2, 3, 4) @ nf.ones(3, 4, 5)
    with pytest.raises(RuntimeError, match="matmul"):
        nf.tensor(2.0) @ nf.ones(3)


# -- float64 gradchecks of each primitive --------------------------------------------------------------
@pytest.mark.parametrize("fn,shapes,low", [
    (nf.add, [(2, 3), (3,)], -2), (nf.sub, [(2, 1), (1, 3)], -2), (nf.mul, [(2, 3), ()], -2),
    (nf.div, [(2, 3), (2, 1)], 0.5), (nf.neg, [(2, 3)], -2), (nf.matmul, [(2, 3), (3, 2)], -2),
    (nf.matmul, [(3,), (2, 3, 2)], -2), (nf.matmul, [(2, 2, 3), (3,)], -2),
    (nf.pow, [(2, 3), (2, 3)], 0.5), (lambda a: a ** 3, [(2, 3)], -2), (lambda a: a ** 2.5, [(2, 3)], 0.5),
    (lambda a: a ** -1, [(3,)], 0.5), (lambda a: 3 ** a, [(3,)], -1), (nf.remainder, [(4,), (4,)], 0.3),
    (nf.maximum, [(3, 4), (4,)], -2), (nf.minimum, [(3, 4), (3, 1)], -2),
])
def test_gradcheck(fn, shapes, low):
    gradcheck(fn, shapes, low=low)


def test_reflected_floor_divide_and_aliases():
    check_op(lambda x: 7 // x, lambda x: 7 // x, [np.array([2.0, -3.0, 1.5], dtype=np.float32)], grad=False)
    check_op(nf.divide, torch.divide, [(2, 3), (3,)], low=0.5)
    check_op(nf.multiply, torch.multiply, [(2, 3), (3,)])
    check_op(nf.subtract, torch.subtract, [(2, 3), (3,)])
    check_op(lambda a, b: a.true_divide(b), lambda a, b: a.true_divide(b), [(2, 3), (3,)], low=0.5)


def test_boolean_reductions_and_predicates():
    x = np.array([[0.0, np.nan, 1.0], [np.inf, -2.0, 0.0]], dtype=np.float32)
    t, r = nf.tensor(x), torch.tensor(x)
    for name in ("isnan", "isinf", "isfinite"):
        np.testing.assert_array_equal(getattr(nf, name)(t).numpy(), getattr(torch, name)(r).numpy())
    b = nf.tensor(x > 0)
    rb = torch.tensor(x > 0)
    assert nf.any(b).item() is True and nf.all(b).item() is False
    np.testing.assert_array_equal(b.any(1).numpy(), rb.any(1).numpy())
    np.testing.assert_array_equal(b.all(0, keepdim=True).numpy(), rb.all(0, keepdim=True).numpy())
    assert nf.allclose(nf.ones(3), nf.ones(3) + 1e-7) and not nf.ones(3).allclose(nf.zeros(3))
    assert nf.equal(nf.ones(2), nf.ones(2)) and not nf.equal(nf.ones(2), nf.ones(3))
