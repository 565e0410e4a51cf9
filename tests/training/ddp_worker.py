"""Run by test_trainer's DDP and FSDP tests under torchrun (`ddp_worker.py OUT [ddp|fsdp]`):
trains the tiny model 3 steps on a global batch of 4 (2 samples per rank), then writes per rank a
digest of its parameters (FSDP: of its shards) and the losses it logged (the global batch's,
which all ranks compute)."""

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from earthx_sdk.modeling.config import EarthXConfig
from earthx_sdk.modeling.model import EarthXModel
from tests.training.test_trainer import DDP_CONFIG, _sources
from training.trainer import train

out = Path(sys.argv[1])
torch.manual_seed(0)
model = EarthXModel(EarthXConfig.from_name("tiny"))
mode = sys.argv[2] if len(sys.argv) > 2 else "ddp"
rows = train(model, _sources(), dataclasses.replace(DDP_CONFIG, parallel=mode), out,
             progress=False)
h = hashlib.sha256()
for _, p in sorted(model.named_parameters()):
    # FSDP: each rank holds its own shards (train() ended the process group, so nothing can be
    # gathered now); the test checks the gathered model rank 0 saved instead
    p = p.to_local() if hasattr(p, "to_local") else p
    h.update(p.detach().numpy().tobytes())
(out.parent / f"digest{os.environ['RANK']}.json").write_text(
    json.dumps({"sha": h.hexdigest(), "rows": rows}))
