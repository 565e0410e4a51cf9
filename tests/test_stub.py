"""The .pyi stub of _C lists exactly the module's functions, with the same argument names."""

import ast
import re
from pathlib import Path

import pytest

from earthx_sdk import _ext
from tests.conftest import requires_native

STUB = Path(__file__).resolve().parents[1] / "earthx_sdk" / "_C.pyi"


def _stub_signatures() -> dict[str, list[str]]:
    tree = ast.parse(STUB.read_text())
    return {node.name: [a.arg for a in node.args.args + node.args.kwonlyargs]
            for node in tree.body if isinstance(node, ast.FunctionDef)}


def _module_signatures() -> dict[str, list[str]]:
    C = _ext.native()
    out = {}
    for name in dir(C):
        fn = getattr(C, name)
        if name.startswith("_") or not callable(fn):
            continue
        # pybind11 puts the signature on the docstring's first line: "name(a: T, b: U = x) -> R"
        m = re.match(rf"{name}\((.*)\) ->", (fn.__doc__ or "").splitlines()[0])
        assert m, f"_C.{name} has no pybind11 signature line: {fn.__doc__!r}"
        args = [a.split(":")[0].strip() for a in re.split(r",\s*(?![^\[]*\])", m.group(1)) if a]
        out[name] = args
    return out


@requires_native
def test_stub_lists_every_function_with_its_arguments():
    stub, module = _stub_signatures(), _module_signatures()
    assert sorted(stub) == sorted(module), (
        f"missing from the stub: {sorted(set(module) - set(stub))}; "
        f"not in _C: {sorted(set(stub) - set(module))}")
    wrong = {n: (stub[n], module[n]) for n in module if stub[n] != module[n]}
    assert not wrong, f"argument names differ (stub, module): {wrong}"


def test_stub_parses_and_is_not_empty():
    sigs = _stub_signatures()
    assert {"build_info", "preprocess", "normalize", "resize"} <= set(sigs)


@pytest.mark.parametrize("name", ["build_info", "cuda_device_count"])
@requires_native
def test_build_facts(name):
    info = _ext.build_info()
    assert info["built"] is True
    assert set(info) >= {"cuda_compiled", "tensorrt_compiled", "ops"}
    assert name in info["ops"]
