"""Soak test of fault tolerance under horovodrun (a measurement, not a test: minutes of CPU).

    python bench/soak.py [--minutes 5] [--min_kills 3] [--seed 0] [--root DIR] [--output FILE]

Trains the tiny MNIST model (one flow step per level, width 8) with ``horovodrun -np 2 --gloo``,
through tests/horovod_worker.py (train.py's own main, plus a probe that records each rank's
pid, the steps it completed and a sha256 of all its shared state at the start, at every
checkpoint and at the end). Each job is the same command; each is killed: at a random moment
(uniform in ``--kill_after`` seconds after its launch, so some kills land in the start-up) a
random worker gets SIGKILL, horovodrun ends the job, and the soak starts the same command again.
Once ``--minutes`` have passed and at least ``--min_kills`` kills landed after a step, the last
job is stopped gracefully (SIGTERM to horovodrun; each process exits 75 and the run's
metrics.jsonl ends with its ``end`` record) and evaluate.py reads the final checkpoint.

What is checked, and printed as a table (and written as JSON to ``--output``):

* every job resumed from the newest checkpoint the job before left (its "resumed from" line);
* the steps lost to a kill (the last step any rank completed minus the newest checkpoint) are at
  most ``--checkpoint_every_steps``; the graceful stop loses none;
* so the final step is the sum of the steps the jobs trained minus the steps lost;
* both ranks hold the same state (equal sha256) at every checkpoint, and each job's start is
  bit for bit the state its checkpoint was written from; a difference names the part (model,
  optimizer, average, progress) it is in; both ranks record the same training seconds after
  every step (rank 0's clock, broadcast);
* evaluate.py reads the final checkpoint (its step is the final step, its bits/dim finite).
"""
import argparse
import datetime
import json
import math
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import psutil

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glow_nxn.run_folder import RunFolder  # noqa: E402

WORKER = str(REPO / "tests" / "horovod_worker.py")
HOROVODRUN = str(pathlib.Path(sys.executable).parent / "horovodrun")
RESUMED = re.compile(r"resumed from \S+ckpt-(\d+) at step (\d+)")
CHECKPOINT = re.compile(r"ckpt-(\d+)\.index$")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="time spent killing jobs")
    parser.add_argument("--min_kills", type=int, default=3, help="kills that must land after a "
                        "training step before the soak ends")
    parser.add_argument("--kill_after", type=float, nargs=2, default=(15.0, 60.0),
                        metavar=("LOW", "HIGH"), help="seconds after a job's launch, uniform")
    parser.add_argument("--checkpoint_every_steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kills' timing and "
                        "victims")
    parser.add_argument("--root", default=None, help="folder for the run, the records and the "
                        "logs (default: a new temporary one)")
    parser.add_argument("--data_dir", default=None, help="tfds data_dir with MNIST prepared "
                        "(default: <root>/tfds, prepared first)")
    parser.add_argument("--output", default=None, help="JSON summary (default: <root>/soak.json)")
    return parser.parse_args()


def command(args, root, data_dir):
    return [HOROVODRUN, "-np", "2", "--gloo", sys.executable, WORKER, "train.py",
            "--preset=mnist", "--steps_per_level=1", "--hidden_width=8",
            "--per_replica_batch_size=8", "--init_batch_size=16", "--lr_schedule=constant",
            "--warmup_steps=10", "--train_steps=1000000", "--log_every_steps=5",
            f"--checkpoint_every_steps={args.checkpoint_every_steps}", "--eval_every_steps=0",
            f"--workdir={root / 'run'}", f"--data_dir={data_dir}"]


def workers(launcher):
    """``{rank: psutil.Process}`` of the worker processes under horovodrun ``launcher``."""
    found = {}
    for process in launcher.children(recursive=True):
        try:
            if process.cmdline()[1:2] == [WORKER]:
                found[int(process.environ()["HOROVOD_RANK"])] = process
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError, KeyError):
            continue
    return found


def newest_checkpoint(run):
    """The step of the checkpoint TensorFlow's index names (0 if none), read without TensorFlow,
    after checking that its files are there."""
    checkpoints = pathlib.Path(RunFolder(str(run)).checkpoint_dir)
    steps = [int(m[1]) for name in os.listdir(checkpoints)
             if (m := CHECKPOINT.search(name))] if checkpoints.is_dir() else []
    index = checkpoints / "checkpoint"
    if not index.exists():
        return 0
    newest = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', index.read_text(), re.M)
    step = int(newest[1]) if newest else 0
    assert step in steps, (step, steps)
    return step


def read_records(record_dir):
    records = []
    for rank in range(2):
        path = record_dir / f"rank{rank}.json"
        records.append(json.loads(path.read_text()) if path.exists() else None)
    return records


def run_job(args, root, data_dir, number, stop):
    """One job, ended by ``stop`` ("kill" or "term"); returns what it did."""
    record_dir = root / f"job{number:02d}"
    record_dir.mkdir()
    log_path = root / f"job{number:02d}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOW_TEST_RECORD_DIR": str(record_dir)}
    for name in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(name, None)
    start_checkpoint = newest_checkpoint(root / "run")
    rng = random.Random(args.seed * 1000 + number)
    delay = rng.uniform(*args.kill_after)
    launched = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command(args, root, data_dir), cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        launcher = psutil.Process(process.pid)
        victim = killed_at = None
        while process.poll() is None:
            time.sleep(0.2)
            elapsed = time.time() - launched
            if stop == "kill" and elapsed >= delay and victim is None:
                found = workers(launcher)
                if len(found) == 2:
                    victim = rng.choice(sorted(found))
                    found[victim].kill()
                    killed_at = elapsed
            if stop == "term" and victim is None:
                records = read_records(record_dir)
                if all(r and len(r["examples"]) >= 5 for r in records):
                    process.send_signal(signal.SIGTERM)
                    victim, killed_at = "horovodrun", elapsed
            if elapsed > 900:
                process.kill()
                raise RuntimeError(f"job {number} did not end; see {log_path}")
        process.wait()
    output = log_path.read_text()
    records = read_records(record_dir)
    resumed = RESUMED.search(output)
    start_step = int(resumed[2]) if resumed else 0
    completed = [len(r["examples"]) if r else 0 for r in records]
    # A checkpoint proves its step was reached: a kill can land after rank 0 wrote it and before
    # the probe (the last hook) recorded the step.
    reached = max(start_step + max(completed), newest_checkpoint(root / "run"))
    return {
        "job": number, "stop": stop, "victim": victim,
        "at_seconds": None if killed_at is None else round(killed_at, 1),
        "exit_code": process.returncode, "start_checkpoint": start_checkpoint,
        "start_step": start_step, "steps_by_rank": completed, "reached": reached,
        "checkpoint": newest_checkpoint(root / "run"), "records": records,
        "seconds": round(time.time() - launched, 1),
        "exit_75": "Exit code: 75" in output,
        "end": (RunFolder(str(root / "run")).read_metrics() or [None])[-1]}


def check(jobs, args):
    """The soak's checks (module docstring); returns a list of failures (empty: all held)."""
    failures = []
    digests = {}  # "step N" -> digest, from every job's records
    for job in jobs:
        name = f"job {job['job']}"
        if job["start_step"] != job["start_checkpoint"]:
            failures.append(f"{name} resumed at step {job['start_step']}, the newest checkpoint "
                            f"was {job['start_checkpoint']}")
        lost = job["reached"] - job["checkpoint"]
        job["lost"] = lost
        bound = 0 if job["stop"] == "term" else args.checkpoint_every_steps
        if not 0 <= lost <= bound:
            failures.append(f"{name} lost {lost} steps (bound {bound})")
        ranks = [r for r in job["records"] if r]
        if len(ranks) == 2:
            steps = min(len(ranks[0]["seconds"]), len(ranks[1]["seconds"]))
            apart = [k + 1 for k in range(steps)
                     if ranks[0]["seconds"][k] != ranks[1]["seconds"][k]]
            if apart:
                failures.append(f"{name}: the ranks' training seconds (rank 0's clock, broadcast) "
                                f"differ after {len(apart)} of {steps} steps, first after step "
                                f"{job['start_step'] + apart[0]}")
            shared = set(ranks[0]["digests"]) & set(ranks[1]["digests"])
            unequal = [k for k in shared if ranks[0]["digests"][k] != ranks[1]["digests"][k]]
            if unequal:
                parts = {part for key in unequal for part, value in ranks[0]["parts"][key].items()
                         if ranks[1]["parts"][key][part] != value}
                failures.append(f"{name}: the ranks' states differ at {sorted(unequal)} "
                                f"(in {sorted(parts)})")
        for record in ranks:
            start = record["digests"].get("start")
            before = digests.get(f"step {job['start_step']}")
            if start and before and job["start_step"] and start != before:
                failures.append(f"{name} started from a state other than checkpoint "
                                f"{job['start_step']}'s")
            digests.update({k: v for k, v in record["digests"].items() if k.startswith("step")})
    trained = sum(job["reached"] - job["start_step"] for job in jobs)
    lost = sum(job["lost"] for job in jobs)
    final = jobs[-1]["checkpoint"]
    if trained - lost != final:
        failures.append(f"trained {trained} - lost {lost} != final step {final}")
    # horovodrun, itself signalled, can lose its processes' 75 and exit 0 (docs/DISTRIBUTED.md);
    # the run's last record says how it ended either way.
    end = jobs[-1]["end"] or {}
    if (end.get("kind"), end.get("stop_reason")) != ("end", "SIGTERM received"):
        failures.append(f"the last job's last metrics record is {end}, not its end on SIGTERM")
    for job in jobs[:-1]:
        if job["end"] and job["end"]["kind"] == "end":
            failures.append(f"job {job['job']}, killed, left an end record")
    return failures, trained, lost, final


def evaluate(root, data_dir):
    result = subprocess.run([sys.executable, str(REPO / "evaluate.py"),
                             f"--workdir={root / 'run'}", f"--data_dir={data_dir}",
                             "--batch_size=1000", f"--output={root / 'eval.json'}"],
                            cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        return None, result.stderr[-2000:]
    return json.loads((root / "eval.json").read_text()), None


def main():
    args = parse_args()
    root = pathlib.Path(args.root or tempfile.mkdtemp(prefix="soak_")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or str(root / "tfds")
    if not args.data_dir:  # once, before the clock starts: the soak is about training
        subprocess.run([sys.executable, "-c", "import glow_nxn.data as d; d.prepare('mnist', "
                        f"data_dir={data_dir!r})"], cwd=REPO, check=True)
    began = time.time()
    jobs, landed = [], 0
    while time.time() - began < args.minutes * 60 or landed < args.min_kills:
        job = run_job(args, root, data_dir, len(jobs), "kill")
        jobs.append(job)
        landed += job["reached"] > job["start_step"]
        print(f"job {job['job']}: from step {job['start_step']}, killed rank {job['victim']} "
              f"at {job['at_seconds']} s, reached step {job['reached']}, newest checkpoint "
              f"{job['checkpoint']}, exit {job['exit_code']}", flush=True)
    jobs.append(run_job(args, root, data_dir, len(jobs), "term"))
    print(f"job {jobs[-1]['job']}: from step {jobs[-1]['start_step']}, SIGTERM to horovodrun, "
          f"checkpoint {jobs[-1]['checkpoint']}", flush=True)
    failures, trained, lost, final = check(jobs, args)
    evaluated, error = evaluate(root, data_dir)
    if error or evaluated["step"] != final or not math.isfinite(evaluated["bits_per_dim"]):
        failures.append(f"evaluate.py on the final checkpoint: {error or evaluated}")
    summary = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "minutes": round((time.time() - began) / 60, 1), "jobs": len(jobs),
        "kills": len(jobs) - 1, "kills_after_a_step": landed, "trained": trained, "lost": lost,
        "final_step": final, "eval": evaluated, "failures": failures, "root": str(root),
        "load_average": os.getloadavg(),
        "per_job": [{k: v for k, v in job.items() if k != "records"} for job in jobs]}
    output = pathlib.Path(args.output or root / "soak.json")
    output.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| job | stopped by | victim | at (s) | from step | steps (rank 0, 1) | reached | "
          "checkpoint | lost |\n|---|---|---|---|---|---|---|---|---|")
    for job in jobs:
        print(f"| {job['job']} | {job['stop']} | {job['victim']} | {job['at_seconds']} | "
              f"{job['start_step']} | {job['steps_by_rank']} | {job['reached']} | "
              f"{job['checkpoint']} | {job['lost']} |")
    print(f"\ntrained {trained} steps, lost {lost}, final step {final} "
          f"({'=' if trained - lost == final else '!='} {trained} - {lost}); evaluate.py: "
          f"{evaluated and round(evaluated['bits_per_dim'], 4)} bits/dim at step "
          f"{evaluated and evaluated['step']}; {len(jobs) - 1} kills ({landed} after a step) in "
          f"{summary['minutes']} min; written to {output}")
    print("all checks held" if not failures else "FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
