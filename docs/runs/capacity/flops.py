"""Training FLOPs per image and parameters of the mnist preset, wider (width 256) and deeper (K=16).

    python docs/runs/capacity/flops.py > docs/runs/capacity/flops.json
"""
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import throughput  # noqa: E402  (bench/throughput.py; imports tf-keras first)

from glow_nxn.config import preset  # noqa: E402
from glow_nxn.model import Glow  # noqa: E402

rows = {}
for name, overrides in {"mnist preset": {}, "--hidden_width=256": {"hidden_width": 256},
                        "--steps_per_level=16": {"steps_per_level": 16}}.items():
    model = Glow(preset("mnist", **overrides))
    rows[name] = {"parameters": sum(int(v.shape.num_elements())
                                    for v in model.trainable_variables),
                  "train_mflop_per_image": throughput.train_flops_per_image(model) / 1e6}
base = rows["mnist preset"]["train_mflop_per_image"]
for row in rows.values():
    row["flops_over_preset"] = row["train_mflop_per_image"] / base
print(json.dumps(rows, indent=1))
