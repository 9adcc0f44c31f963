"""Peak memory and time of a training step with and without ``--remat`` (a measurement, not a test).

    python bench/memory.py [--cases cifar10:8,16 celeba_hq_256:1,2] [--repeats 2]
                           [--min_seconds 60] [--output docs/runs/memory/memory.json]

Each case ``preset:b1,b2,…`` runs in fresh Python processes, one per batch size (each starts from
nothing and gives its memory back): it builds the real :class:`glow_nxn.training.Trainer` of the
preset (model, Adam's two slots, the weight average), traces its compiled training step with and
without remat (:meth:`~glow_nxn.training.Trainer.compiled_step`), runs each once untimed (the
first run also optimises the graph), then each in turn (a change in the machine's load hits
both alike) until each has run ``--repeats`` timed steps and ``--min_seconds``, on a fixed batch
of noise. The ActNorms keep their identity
start: the data-dependent init is a separate pass that changes no shape and no cost.

**Memory** is TensorFlow's own count of the bytes its CPU allocator holds for tensors
(``tf.config.experimental.get_memory_info('CPU:0')``; the peak is reset before every step):
*resident* before the first step (weights, Adam's slots, the average, the batch), and the
*peak* of each step. ``peak − resident`` is the step's own memory: the activations kept for the
backward pass, the gradients and the temporaries. The children run with
``TF_CPU_ALLOCATOR_USE_BFC=true``: TensorFlow's best-fit-with-coalescing allocator, the one it
uses on GPUs, then serves every tensor, where by default oneDNN's allocator serves tensors under
256 KiB from malloc and counts none of them (at the batch sizes here, every flow step's input).
A GPU's allocator would hold the same float32 tensors (cuDNN's workspaces aside), so these are
the numbers that project to a GPU. The allocator's limit (``TF_CPU_BFC_MEM_LIMIT_IN_MB``) is set
to ``--memory_limit_gib``: a mode whose step needs more is reported as not fitting rather than
left to the kernel's out-of-memory killer. The process's peak RSS (``VmHWM``, which also counts
TensorFlow's code, the graphs and the allocator's free chunks) is printed beside them, after the
remat steps alone and after all steps.

**Per image**: the slope of the peak between the batch sizes of a case (memory is affine in the
batch). **Largest per-GPU batch** for 16, 40 and 80 GB (taken as GiB, 90% of it usable: the CUDA
context, cuDNN's workspaces and fragmentation take the rest): the peak's intercept plus the
divergence guard's snapshot (a second copy of the weights, slots and average, which ``fit``
keeps on the device) plus the slope times the batch must fit. **Time per epoch on 4 GPUs** is a
projection, not a measurement: the training FLOPs per image, counted by TensorFlow's profiler on
the step's graph (bench/throughput.py's :func:`train_flops_per_image`; with remat it counts the
recomputed forward passes too), times the training split's images, over 4 GPUs each at
``--utilisation`` of ``--gpu_tflops`` (30% of an A100's 19.5 TFLOP/s float32 by default).

Prints markdown tables; with ``--output`` it also writes every measurement, the projection's
assumptions and the tables, as JSON (rewritten after each case, so an interrupted run keeps
what it measured). ``--resume`` continues such a JSON: it keeps its measurements and measures
only the preset–batch pairs and FLOP counts it lacks; the JSON then lists every command that
added to it.
"""
import argparse
import datetime
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GIB = 2**30
GPU_MEMORY_GB = (16, 40, 80)
USABLE_SHARE = 0.9
# Images in each dataset's training split (glow_nxn/data.py's table of datasets).
TRAIN_IMAGES = {"cifar10": 50_000, "imagenet32": 1_281_167, "imagenet64": 1_281_167,
                "celeba_hq_256": 27_000, "mnist": 60_000}
MODES = (("remat", True), ("plain", False))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["cifar10:8,16", "celeba_hq_256:1,2"],
                        help="preset:batch,batch,… (two batch sizes give the per-image slope)")
    parser.add_argument("--repeats", type=int, default=2, help="fewest timed steps per mode")
    parser.add_argument("--min_seconds", type=float, default=60.0,
                        help="timed steps continue until each mode has run this long")
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--gpu_tflops", type=float, default=19.5,
                        help="float32 peak of one GPU (A100: 19.5)")
    parser.add_argument("--utilisation", type=float, default=0.3,
                        help="share of that peak the projection assumes")
    parser.add_argument("--memory_limit_gib", type=float, default=None,
                        help="most memory TensorFlow may allocate in a child (default: the "
                             "memory available now less 4 GiB)")
    parser.add_argument("--output", default=None, help="also write everything to this JSON")
    parser.add_argument("--resume", action="store_true",
                        help="keep the measurements already in --output; measure the rest")
    parser.add_argument("--from_json", default=None,
                        help="measure nothing: tabulate the measurements of this JSON again")
    parser.add_argument("--child", nargs=4, metavar=("PRESET", "BATCH", "REPEATS", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--count_flops", metavar="PRESET", help=argparse.SUPPRESS)
    return parser.parse_args()


# ---- in a child process -----------------------------------------------------------------------

def peak_rss_bytes():
    """The process's peak resident set size so far (``VmHWM``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(preset_name, batch, repeats, min_seconds):
    """Memory and seconds of the training step of ``preset_name`` at ``batch``, both modes."""
    import glow_nxn  # noqa: F401  (selects tf-keras before TensorFlow is imported)
    import tensorflow as tf

    from glow_nxn import training
    from glow_nxn.config import DataConfig, RunConfig, TrainConfig, preset

    def allocated():
        return tf.config.experimental.get_memory_info("CPU:0")

    config = preset(preset_name)
    workdir = tempfile.TemporaryDirectory()  # nothing is written there: no step is saved
    trainer = training.Trainer(
        RunConfig(model=config, data=DataConfig(dataset=preset_name),
                  train=TrainConfig(per_replica_batch_size=batch)),
        os.path.join(workdir.name, "run"), log=lambda line: None)
    trainer.optimizer.learning_rate = 1e-4
    x = tf.random.stateless_uniform((batch, *config.image_shape), seed=[0, 1]) - 0.5
    steps = {name: trainer.compiled_step(remat) for name, remat in MODES}
    for step in steps.values():
        step.get_concrete_function(x)
    state = trainer.model.variables + trainer.optimizer.variables() + trainer.average.shadows
    result = {"preset": preset_name, "batch": batch,
              "parameters": sum(int(v.shape.num_elements()) for v in
                                trainer.model.trainable_variables),
              "state_bytes": sum(int(v.shape.num_elements()) * v.dtype.size for v in state),
              "resident_bytes": allocated()["current"]}

    def run(name):
        tf.config.experimental.reset_memory_stats("CPU:0")
        start = time.perf_counter()
        loss, _, finite = steps[name](x)
        loss.numpy()
        seconds = time.perf_counter() - start
        return seconds, allocated()["peak"], bool(finite)

    fitting = []
    for name, _ in MODES:
        try:
            seconds, peak, finite = run(name)
        except tf.errors.ResourceExhaustedError:
            result[name] = {"out_of_memory": True}
            continue
        fitting.append(name)
        result[name] = {"first_step_seconds": seconds, "peak_bytes": [peak], "finite": finite,
                        "step_seconds": [], "rss_peak_bytes_after": peak_rss_bytes()}
    while fitting and any(len(result[name]["step_seconds"]) < repeats
                          or sum(result[name]["step_seconds"]) < min_seconds
                          for name in fitting):
        for name in fitting:
            seconds, peak, finite = run(name)
            result[name]["step_seconds"].append(seconds)
            result[name]["peak_bytes"].append(peak)
            result[name]["finite"] &= finite
    return result


def count_flops(preset_name):
    """Training FLOPs per image of ``preset_name``, plain and with every flow step recomputed."""
    import glow_nxn  # noqa: F401  (selects tf-keras before TensorFlow is imported)

    from glow_nxn.config import preset
    from glow_nxn.model import Glow
    from throughput import train_flops_per_image

    model = Glow(preset(preset_name))
    return {name: train_flops_per_image(model, batch=1, recompute=remat)
            for name, remat in MODES}


# ---- in the parent ------------------------------------------------------------------------------

def available_memory_bytes():
    """``MemAvailable`` of /proc/meminfo: what can be allocated now without swapping."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def in_child(arguments, limit_bytes):
    """Run this script with ``arguments`` in a fresh Python whose TensorFlow allocates at most
    ``limit_bytes``, every tensor through its BFC allocator; its last stdout line, as JSON."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CPU_ALLOCATOR_USE_BFC": "true",
           "TF_CPU_BFC_MEM_LIMIT_IN_MB": str(int(limit_bytes // 2**20))}
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True,
                          env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(arguments)} failed ({done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_case(text):
    name, batches = text.split(":")
    return name, sorted(int(b) for b in batches.split(","))


def summarise(record):
    """Per preset and mode: the peak's slope (bytes per image) and intercept, the largest
    per-GPU batches and the projected seconds per epoch, under ``record["assumptions"]``."""
    measured, flops, assumed = record["measured"], record["flops"], record["assumptions"]
    summary = {}
    for name in dict.fromkeys(m["preset"] for m in measured):
        cases = sorted((m for m in measured if m["preset"] == name), key=lambda m: m["batch"])
        entry = {"parameters": cases[0]["parameters"], "state_bytes": cases[0]["state_bytes"]}
        for mode, _ in MODES:
            row = {}
            fitting = [case for case in cases if not case[mode].get("out_of_memory")]
            if len(fitting) >= 2:
                low, high = fitting[0], fitting[-1]
                slope = ((max(high[mode]["peak_bytes"]) - max(low[mode]["peak_bytes"]))
                         / (high["batch"] - low["batch"]))
                intercept = max(low[mode]["peak_bytes"]) - slope * low["batch"]
                fixed = intercept + entry["state_bytes"]
                row.update(bytes_per_image=slope, intercept_bytes=intercept, largest_batch={
                    str(gb): max(0, math.floor((USABLE_SHARE * gb * GIB - fixed) / slope))
                    for gb in GPU_MEMORY_GB})
            if name in flops:
                rate = assumed["gpus"] * assumed["utilisation"] * assumed["gpu_tflops"] * 1e12
                row.update(flops_per_image=flops[name][mode],
                           projected_epoch_seconds=TRAIN_IMAGES[name] * flops[name][mode] / rate)
            entry[mode] = row
        summary[name] = entry
    return summary


def gigabytes(value):
    return f"{value / GIB:.2f}"


def paired_ratio(case):
    """The median over the timed rounds of ``remat step seconds / plain step seconds``."""
    return statistics.median(remat / plain for remat, plain in zip(
        case["remat"]["step_seconds"], case["plain"]["step_seconds"]))


def tables(record):
    """The markdown tables of ``record``'s measurements and summary."""
    assumed = record["assumptions"]
    lines = ["Measured on this CPU, one process per preset and batch. Memory in GiB: the "
             "weights, Adam's slots and the average (their sizes); the step's peak above what "
             "TensorFlow's CPU allocator held before it (activations kept for the backward "
             "pass, gradients, temporaries); the process's peak RSS after the remat steps and "
             "after all. Seconds per step: the fastest timed step of each mode (the least "
             "disturbed by other jobs); remat ÷ plain: the median, over the timed rounds, of "
             "the ratio of a round's remat step to its plain step, run right after it.", "",
             "| preset | batch | state | step peak − resident: plain | remat | plain ÷ remat "
             "| s/step: plain | remat | remat ÷ plain | timed steps each | process peak RSS: remat "
             "| all |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case in record["measured"]:
        above, seconds, rss, timed = {}, {}, {}, {}
        for mode, _ in MODES:
            if not case[mode].get("out_of_memory"):
                above[mode] = max(case[mode]["peak_bytes"]) - case["resident_bytes"]
                seconds[mode] = min(case[mode]["step_seconds"])
                rss[mode] = case[mode]["rss_peak_bytes_after"]
                timed[mode] = len(case[mode]["step_seconds"])

        def cell(values, mode, form):
            return form(values[mode]) if mode in values else "did not fit"

        both = len(above) == len(MODES)
        lines.append("| " + " | ".join([
            case["preset"], str(case["batch"]), gigabytes(case["state_bytes"]),
            cell(above, "plain", gigabytes), cell(above, "remat", gigabytes),
            f"{above['plain'] / above['remat']:.1f}×" if both else "—",
            cell(seconds, "plain", "{:.1f}".format), cell(seconds, "remat", "{:.1f}".format),
            f"{paired_ratio(case):.2f}×" if both else "—",
            str(max(timed.values())),
            cell(rss, "remat", gigabytes), cell(rss, "plain", gigabytes)]) + " |")
    lines += ["", f"Per paper preset: memory per image (the slope of the step peak between the "
              f"batch sizes measured), the largest per-GPU batch that fits, and a **projected** "
              f"time per epoch on {assumed['gpus']} GPUs at {assumed['utilisation']:.0%} of "
              f"{assumed['gpu_tflops']} TFLOP/s each (from the FLOPs per image; no GPU "
              f"measured):", "",
              "| preset | parameters | remat | MiB per image | largest batch 16 / 40 / 80 GB | "
              "training GFLOP per image | projected epoch on 4 GPUs |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for name, entry in record["summary"].items():
        for mode, _ in MODES:
            row = entry[mode]
            per_image = (f"{row['bytes_per_image'] / 2**20:.1f}" if "bytes_per_image" in row
                         else "—")
            largest = (" / ".join(str(row["largest_batch"][str(gb)]) for gb in GPU_MEMORY_GB)
                       if "largest_batch" in row else "—")
            flops = f"{row['flops_per_image'] / 1e9:.1f}" if "flops_per_image" in row else "—"
            epoch = (f"{row['projected_epoch_seconds'] / 60:.1f} min"
                     if "projected_epoch_seconds" in row else "—")
            lines.append(f"| {name} | {entry['parameters']:,} | "
                         f"{'yes' if mode == 'remat' else 'no'} | {per_image} | {largest} | "
                         f"{flops} | {epoch} |")
    return "\n".join(lines)


def machine():
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo
                  if line.startswith("model name")]
    return f"{os.cpu_count()} cores, {models[0] if models else 'unknown CPU'}"


def main():
    args = parse_args()
    if args.child:
        name, batch, repeats, seconds = args.child
        print(json.dumps(measure(name, int(batch), int(repeats), float(seconds))))
        return
    if args.count_flops:
        print(json.dumps(count_flops(args.count_flops)))
        return
    command = "python bench/memory.py " + " ".join(sys.argv[1:])
    if args.from_json:
        record = json.loads(pathlib.Path(args.from_json).read_text())
        record["tabulated_by"] = command
        record["summary"] = summarise(record)
        record["table"] = tables(record)
        if args.output:
            pathlib.Path(args.output).write_text(json.dumps(record, indent=1) + "\n")
        report(record)
        return
    record = {"command": command,
              "date": str(datetime.date.today()), "machine": machine(),
              "assumptions": {"gpus": args.gpus, "gpu_tflops": args.gpu_tflops,
                              "utilisation": args.utilisation, "usable_share": USABLE_SHARE,
                              "gpu_memory_gib": list(GPU_MEMORY_GB),
                              "train_images": TRAIN_IMAGES},
              "load_average_before": os.getloadavg()[0], "measured": [], "flops": {}}
    if args.resume:
        if not args.output or not pathlib.Path(args.output).exists():
            sys.exit(f"--resume continues --output, and there is none at {args.output!r}: "
                     "drop --resume or name the JSON")
        earlier = json.loads(pathlib.Path(args.output).read_text())
        if earlier["assumptions"] != record["assumptions"] or earlier["machine"] != machine():
            sys.exit(f"--resume: {args.output} was measured on another machine or under other "
                     "assumptions; start a new --output")
        earlier.setdefault("resumed_by", []).append(f"{command} ({record['date']})")
        record = earlier
    limit = (args.memory_limit_gib * GIB if args.memory_limit_gib
             else available_memory_bytes() - 4 * GIB)
    record["memory_limit_bytes"] = limit

    def save():
        record["summary"] = summarise(record)
        record["table"] = tables(record)
        if args.output:
            pathlib.Path(args.output).write_text(json.dumps(record, indent=1) + "\n")

    for case in args.cases:
        name, batches = parse_case(case)
        for batch in batches:
            if any(m["preset"] == name and m["batch"] == batch for m in record["measured"]):
                print(f"{name}, batch {batch}: measured already", flush=True)
                continue
            print(f"{name}, batch {batch}…", flush=True)
            record["measured"].append(in_child(
                ["--child", name, str(batch), str(args.repeats), str(args.min_seconds)], limit))
            save()
        if name not in record["flops"]:
            record["flops"][name] = in_child(["--count_flops", name], limit)
        save()
    record["load_average_after"] = os.getloadavg()[0]
    save()
    report(record)


def report(record):
    print()
    after = record.get("load_average_after")
    print(f"{record['command']}\n{record['date']}, {record['machine']}, 1-minute load average "
          f"{record['load_average_before']:.2f} before, "
          + (f"{after:.2f} after" if after is not None else "interrupted before the end"))
    for line in record.get("resumed_by", []):
        print(f"resumed by {line}")
    print()
    print(record["table"])


if __name__ == "__main__":
    main()
