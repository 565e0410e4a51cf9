"""`import earthx_sdk` without the native core, and `earthx info`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from earthx_sdk import _ext, cli
from tests.conftest import requires_native

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PYTHONWARNINGS": "always"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=full_env, timeout=120)


def test_import_without_native_core_warns_once_and_falls_back():
    code = (
        "import warnings, numpy as np\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import earthx_sdk\n"
        "    from earthx_sdk.ops import preprocess as P\n"
        "print(len([x for x in w if 'native core' in str(x.message)]))\n"
        "out, info = P.preprocess(np.zeros((5, 7, 3), np.uint8), 'optical', 8)\n"
        "print(out.shape)\n"
        "try:\n"
        "    P.preprocess(np.zeros((5, 7, 3), np.uint8), 'optical', 8, impl='native')\n"
        "except RuntimeError as e:\n"
        "    print('RuntimeError', e)\n"
    )
    r = _run(code, EARTHX_DISABLE_NATIVE="1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1"  # exactly one warning
    assert lines[1] == "(3, 8, 8)"  # the reference path ran
    assert lines[2].startswith("RuntimeError preprocess: impl='native' needs earthx_sdk._C")


def test_info_json_without_native_core():
    r = subprocess.run([sys.executable, "-m", "earthx_sdk", "info", "--json"], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "EARTHX_DISABLE_NATIVE": "1"},
                       timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["native"]["built"] is False and d["native"]["ops"] == []
    assert "EARTHX_DISABLE_NATIVE" in d["native"]["error"]


@requires_native
def test_info_reports_the_native_build(capsys):
    assert cli.main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    native = d["native"]
    assert native["built"] is True
    assert native["cuda_compiled"] == _ext.native().build_info()["cuda_compiled"]
    assert {"preprocess", "normalize", "resize"} <= set(native["ops"])
    assert set(d["backends"]) == {"torch", "onnxruntime", "triton", "tensorrt", "transformers"}
    pool = d["kernels"]["region_pool"]
    assert set(pool) >= {"ref"}
    if d["backends"]["torch"]["available"]:
        assert set(pool) == {"ref", "cpu", "triton", "cuda"}
        assert all(v == "available" or v.startswith("unavailable: ") for v in pool.values())
    for b in d["backends"].values():
        assert ("version" in b) == b["available"]
    assert cli.main(["info"]) == 0
    assert "native core: built" in capsys.readouterr().out


@requires_native
def test_set_num_threads_checks_and_restores():
    C = _ext.native()
    before = C.set_num_threads(1)
    assert C.build_info()["threads"] == 1
    C.set_num_threads(before)
    assert C.build_info()["threads"] == before
    with pytest.raises(ValueError, match="set_num_threads: n must be >= 1, got 0"):
        C.set_num_threads(0)
