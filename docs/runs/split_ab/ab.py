"""One round of the A/B of commit "cuts without strided slices": train, sample and evaluate
images/s of R1 (batch 16) and the mnist preset (batch 64), with the code of the tree given.

    python ab.py <tree>      # a checkout of glow_nxn; ab.sh alternates two trees

Imports bench/throughput.py from that tree and uses its own measurement (``row_measurements``:
the real Trainer's compiled step, ``model.sample``, ``model.bits_per_dim``; median of 3
windows of 15 calls) and the float32 matmul peak measured in the same process.
"""
import argparse
import os
import sys
import tempfile

tree = os.path.abspath(sys.argv[1])
sys.path[:0] = [tree, os.path.join(tree, "bench")]
import throughput  # noqa: E402

import glow_nxn  # noqa: E402

assert glow_nxn.__file__.startswith(tree), glow_nxn.__file__
peak = throughput.matmul_peak_flops()
for name, batch in (("r1", 16), ("mnist", 64)):
    args = argparse.Namespace(batch=batch, steps=15, repeats=3, warmup=4)
    with tempfile.TemporaryDirectory() as tmp:
        measured = throughput.row_measurements(throughput.model_config(name), {}, args, tmp)
    cells = " ".join(f"{kind} {batch / seconds:.0f} images/s {flops * batch / seconds / peak:.0%}"
                     for kind, (seconds, flops) in measured.items())
    print(f"{os.environ.get('TAG', tree)} {name}: {cells} (peak {peak / 1e9:.0f} GFLOP/s)",
          flush=True)
