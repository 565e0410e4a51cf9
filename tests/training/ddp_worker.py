"""Run by test_trainer's DDP test under torchrun: trains the tiny model 3 steps, then writes a
digest of its parameters per rank."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from earthx_sdk.modeling.config import EarthXConfig
from earthx_sdk.modeling.model import EarthXModel
from tests.training.test_trainer import _sources
from training.trainer import TrainConfig, train

out = Path(sys.argv[1])
torch.manual_seed(0)
model = EarthXModel(EarthXConfig.from_name("tiny"))
train(model, _sources(), TrainConfig(steps=3, batch_size=4, lr=1e-3, log_every=1), out,
      progress=False)
h = hashlib.sha256()
for _, p in sorted(model.named_parameters()):
    h.update(p.detach().numpy().tobytes())
(out.parent / f"digest{os.environ['RANK']}.json").write_text(json.dumps({"sha": h.hexdigest()}))
