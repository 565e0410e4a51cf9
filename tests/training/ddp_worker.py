"""Run by test_trainer's DDP test under torchrun: trains the tiny model 3 steps on a global batch
of 4 (2 samples per rank), then writes per rank a digest of its parameters and the losses it
logged (the global batch's, which both ranks compute)."""

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
rows = train(model, _sources(), DDP_CONFIG, out, progress=False)
h = hashlib.sha256()
for _, p in sorted(model.named_parameters()):
    h.update(p.detach().numpy().tobytes())
(out.parent / f"digest{os.environ['RANK']}.json").write_text(
    json.dumps({"sha": h.hexdigest(), "rows": rows}))
