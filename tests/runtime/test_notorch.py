"""The onnxruntime path runs where PyTorch is not installed: a subprocess in which `import torch`
fails (sys.modules["torch"] = None before anything is imported) answers as this process does.

CI also runs the torch-free runtime tests in a virtual environment without torch (.ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.runtime.cases import images

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
for name in ("torch", "transformers", "torchvision", "triton"):
    sys.modules[name] = None  # any import of them raises ImportError
import numpy as np
from earthx_sdk import EarthX
from earthx_sdk.prompts import Box, Polygon
from tests.runtime.cases import images

imgs = images()
m = EarthX.load(sys.argv[1], device="cpu", threads=1)
out = {}
r = m.ask(imgs["optical"], "What is in <region>?", [Box(10, 8, 50, 40)], max_new_tokens=4)
out["ask"] = [r.token_ids, r.masks, r.timings["vision"].backend, r.timings["fusion"].backend]
r = m.segment(imgs["infrared"], prompts=[Polygon(((5, 5), (50, 8), (30, 40)))],
              sensor="infrared")
out["segment"] = [r.token_ids, r.masks]
out["stream"] = "".join(m.stream(imgs["sar"], "Describe this image.", sensor="sar",
                                 max_new_tokens=3))
heavy = sorted(k for k, v in sys.modules.items()
               if v is not None and k.split(".")[0] in ("torch", "transformers", "triton"))
out["heavy"] = heavy
print(json.dumps(out))
"""


def _run_without_torch(bundle) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", CHILD, str(bundle)], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_onnxruntime_path_without_torch(tiny_bundle, ort_model):
    from earthx_sdk.prompts import Box, Polygon

    got = _run_without_torch(tiny_bundle)
    assert got["heavy"] == []
    imgs = images()
    r = ort_model.ask(imgs["optical"], "What is in <region>?", [Box(10, 8, 50, 40)],
                      max_new_tokens=4)
    assert got["ask"] == [r.token_ids, r.masks, "onnxruntime:CPUExecutionProvider", "native:_C"]
    s = ort_model.segment(imgs["infrared"], prompts=[Polygon(((5, 5), (50, 8), (30, 40)))],
                          sensor="infrared")
    assert got["segment"] == [s.token_ids, s.masks]
    assert got["stream"] == ort_model.ask(imgs["sar"], "Describe this image.", sensor="sar",
                                          max_new_tokens=3).text
    assert np.asarray(r.token_ids).size == 4


def test_importing_the_api_imports_no_backend():
    code = ("import sys, earthx_sdk; from earthx_sdk import EarthX; import earthx_sdk.cli; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'transformers', 'triton') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"


def test_runtime_sessions_do_not_spin(ort_model):
    """Every onnxruntime session the runtime opens has intra-op spinning off (ort_llm.NO_SPIN:
    spinning pools of the several sessions took the cores from each other and from the native
    core's OpenMP loops)."""
    from earthx_sdk.runtime.ort_llm import NO_SPIN

    eng = ort_model.engine
    ort_model.ask(images()["optical"], "What is in this image?", max_new_tokens=2)
    graphs = eng.mask.graphs
    sessions = [graphs.session(name) for name in ("mask_decoder", "prompt_encoder",
                                                  "vision_optical_3")] + [eng.llm.session]
    for sess in sessions:
        assert sess.get_session_options().get_session_config_entry(NO_SPIN[0]) == NO_SPIN[1]
