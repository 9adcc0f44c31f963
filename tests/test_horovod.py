"""Horovod, proven rather than assumed: ``horovodrun -np 2 --gloo`` against one process, on the CPU.

The scripts run as a user runs them; under horovodrun through tests/horovod_worker.py, which adds
test-only probes from outside the library (weight digests, the examples each rank drew, tfds
preparation calls, a rank that dies). What is shown:

* 2 processes with per-replica batch ``b`` train as 1 process with batch ``2b`` (weights equal to
  float32 tolerance, while runs that should differ do, by orders of magnitude more);
* ``--remat`` (each flow step recomputed in the backward pass) trains as without it;
* rank 0 alone prepares an unprepared tfds ``data_dir``; the other rank waits for it;
* every rank holds identical weights after init and after training, and the ranks draw disjoint
  examples; only rank 0 writes; a run resumed under horovodrun continues;
* evaluate.py under horovodrun reports the single-process test bits/dim;
* the learning rate scales with the number of processes only when asked;
* a rank that dies ends the job with a non-zero exit soon after, and the last checkpoint loads;
* SIGTERM to one rank, or to horovodrun, stops every rank after the same step with rank 0's
  checkpoint; a rank stopped with SIGSTOP, or hung while alive, ends the job within a bound,
  also before the first step completes;
* each gradient is allreduced under a name every rank shares, with and without ``--remat``.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from glow_nxn import training
from glow_nxn.config import TrainConfig
from glow_nxn.run_folder import RunFolder
from horovod_worker import write_indexed_images
from test_support import REPO, TINY_MNIST, run_script, script_env

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
WORKER = os.path.join(REPO, "tests", "horovod_worker.py")
# Weights of 2 processes vs 1 may differ by float32 rounding only: the batch means, ActNorm
# moments and the allreduce sum the same numbers in another order (a few ulps, ~1e-7 relative).
# Adam's lr·m/(√v + ε) carries a relative error in a gradient through ~1:1 where |g| ≫ ε, but
# where |g| is near ε = 1e-7 (weights behind the zero-initialised convolutions) it turns an
# absolute error δ of g into lr·δ/ε = 1e4·δ of the update. Measured after 5 steps: ~1.3e-6
# without the logit input transform, 1.1e-5 with it (the mnist preset since e48b53d: inputs up
# to ±6.9 instead of ±0.5, so larger absolute round-off). 5e-5 is 5% of one Adam step (≈ lr);
# the control runs below differ by more than 1e-2.
WEIGHT_TOLERANCE = 5e-5
CONTROL_MINIMUM = 1e-3
STEP_LINE = re.compile(r"step\s+(\d+)\s+bits/dim\s+([0-9.]+)\s.*\slr\s+([0-9.e+-]+)")


def horovodrun(script, *args, probes=None, expect_ok=True):
    """``horovodrun -np 2 --gloo python tests/horovod_worker.py script args``; CompletedProcess.

    Its stdout holds each rank's lines prefixed ``[rank]<stdout>:``."""
    env = {**script_env(), **(probes or {})}
    result = subprocess.run([HOROVODRUN, "-np", "2", "--gloo", sys.executable, WORKER, script,
                             *args], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=900)
    if expect_ok:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def records(directory):
    """The worker's per-rank records, in rank order."""
    return [json.loads((directory / f"rank{rank}.json").read_text()) for rank in range(2)]


def progress(output):
    """``{step: (train bits/dim, lr)}`` from a run's progress lines."""
    return {int(m[1]): (float(m[2]), float(m[3])) for m in STEP_LINE.finditer(output)}


def max_weight_difference(run_a, run_b):
    """The largest |Δ| over all model variables of two runs' newest checkpoints."""
    a, b = RunFolder(str(run_a)).load_model(), RunFolder(str(run_b)).load_model()
    model_a, model_b = a.model, b.model
    assert a.step == b.step
    # Same architecture, so the same variables in the same order (Keras numbers the names of a
    # second model in one process differently).
    assert [v.shape for v in model_a.variables] == [v.shape for v in model_b.variables]
    return max(float(np.max(np.abs(a.numpy() - b.numpy())))
               for a, b in zip(model_a.variables, model_b.variables))


# Real MNIST, shuffle_buffer=1: 2 processes × batch 8 against 1 process × batch 16.

@pytest.fixture(scope="module")
def equivalence(tmp_path_factory, mnist_data_dir):
    root = tmp_path_factory.mktemp("equivalence")
    (root / "records").mkdir()
    # A 2-step warm-up in a 5-step run (--warmup_share=1: the default tenth would leave none).
    common = [*TINY_MNIST, "--shuffle_buffer=1", "--seed=0", "--train_steps=5",
              "--warmup_steps=2", "--warmup_share=1", "--lr_schedule=constant",
              "--learning_rate=1e-3", "--log_every_steps=1", "--checkpoint_every_steps=5",
              "--eval_every_steps=1000"]
    # The 2-process run gets a data_dir that is not prepared yet: rank 0 has to prepare it.
    two = horovodrun("train.py", *common, f"--workdir={root / 'two'}",
                     f"--data_dir={root / 'unprepared_tfds'}", "--per_replica_batch_size=8",
                     "--init_batch_size=16", probes={"GLOW_TEST_RECORD_DIR": str(root / "records")})
    one_process = [*common, f"--data_dir={mnist_data_dir}"]
    one = run_script("train.py", *one_process, f"--workdir={root / 'one'}",
                     "--per_replica_batch_size=16", "--init_batch_size=32")
    # Controls that must differ: another seed; and one process with batch 8, the data of one rank
    # alone (what 2 processes would train on if gradients or ActNorm moments were not averaged).
    run_script("train.py", *one_process, f"--workdir={root / 'other_seed'}", "--seed=1",
               "--per_replica_batch_size=16", "--init_batch_size=32")
    run_script("train.py", *one_process, f"--workdir={root / 'half_batch'}",
               "--per_replica_batch_size=8", "--init_batch_size=16")
    return types.SimpleNamespace(root=root, two=two, one=one, records=records(root / "records"),
                                 common=common)


def test_two_processes_train_as_one_process_with_twice_the_batch(equivalence):
    root = equivalence.root
    difference = max_weight_difference(root / "two", root / "one")
    assert difference < WEIGHT_TOLERANCE, difference
    for control in ("other_seed", "half_batch"):
        control_difference = max_weight_difference(root / control, root / "one")
        assert control_difference > CONTROL_MINIMUM, (control, control_difference)
    two, one = progress(equivalence.two.stdout), progress(equivalence.one.stdout)
    assert sorted(two) == sorted(one) == [1, 2, 3, 4, 5]
    for step in one:  # the mean train bits/dim of each step's global batch, printed to 4 places
        assert abs(two[step][0] - one[step][0]) <= 1.5e-4, (step, two[step], one[step])
    assert "2 process(es), global batch 16" in equivalence.two.stdout


def test_remat_under_horovodrun_trains_as_without(equivalence, mnist_data_dir):
    """``--remat`` changes how each rank computes its gradients, not what Horovod averages:
    DistributedGradientTape wraps the tape whose backward pass recomputes the flow steps. Two
    processes with it end within float32 tolerance of the two without it."""
    run = equivalence.root / "two_remat"
    horovodrun("train.py", *equivalence.common, f"--workdir={run}",
               f"--data_dir={mnist_data_dir}", "--per_replica_batch_size=8",
               "--init_batch_size=16", "--remat")
    assert RunFolder(str(run)).load_config().train.remat
    assert max_weight_difference(equivalence.root / "two", run) < WEIGHT_TOLERANCE


# Horovod matches the ranks' collectives by name. A rank that names the gradients otherwise than
# its peers waits for ever (the first CI failure of --remat: the test above timed out after 15
# minutes) or sums another variable's gradient. The names must depend on the variable alone.
GRADIENT_NAMES = """
import json, sys
import glow_nxn.keras  # noqa: F401 (legacy Keras before TensorFlow)
import horovod.tensorflow as hvd
import tensorflow as tf
from glow_nxn import distributed
from glow_nxn.config import ModelConfig
from glow_nxn.model import Glow

hvd.init()
replicas = distributed.HorovodReplicas(hvd)
model = Glow(ModelConfig(image_shape=(8, 8, 1), levels=2, steps_per_level=1, hidden_width=4))
x = tf.random.uniform([2, 8, 8, 1])
model.log_prob(x)

@tf.function
def gradients(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.log_prob(x, recompute=sys.argv[1] == "remat"))
    return replicas.gradients(tape, loss, model.trainable_variables)

graph = gradients.get_concrete_function(x).graph
functions = [graph, *(f.graph for f in graph._functions.values() if hasattr(f, "graph"))]
print(json.dumps({"variables": len(model.trainable_variables), "names": sorted(
    op.name.rsplit("/", 1)[-1] for g in functions for op in g.get_operations()
    if op.type == "HorovodAllreduce")}))
"""


@pytest.mark.parametrize("mode", ["plain", "remat"])
def test_each_gradient_is_allreduced_under_a_name_every_rank_shares(mode, tmp_path):
    """The names are ``grad_<i>``, ``i`` the variable's position: not the gradient tensor's graph
    name, which under ``--remat`` is an output index of one IdentityN of captured variables,
    whose order under ``tf.recompute_grad`` (before d7df5b2) followed a set's and differed from
    process to process."""
    script = tmp_path / "names.py"
    script.write_text(GRADIENT_NAMES)
    result = subprocess.run([sys.executable, str(script), mode], cwd=REPO,
                            env={**script_env(), "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["variables"] > 10
    assert found["names"] == sorted(f"grad_{i}" for i in range(found["variables"]))


def test_rank_0_alone_prepares_an_unprepared_dataset(equivalence):
    rank0, rank1 = equivalence.records
    assert len(rank0["prepare_calls"]) == 1
    # data.py calls download_and_prepare whenever the data_dir is not prepared, so rank 1 found
    # it prepared: it waited for rank 0 at the barrier.
    assert rank1["prepare_calls"] == []
    assert (equivalence.root / "unprepared_tfds" / "mnist").is_dir()


def test_ranks_agree_on_real_data_too(equivalence):
    rank0, rank1 = equivalence.records
    assert rank0["digests"] == rank1["digests"]
    assert rank0["digests"]["start"] != rank0["digests"]["end"]


def test_evaluate_under_horovodrun_reports_the_single_process_bits_per_dim(equivalence,
                                                                           mnist_data_dir):
    run = equivalence.root / "one"
    common = [f"--workdir={run}", f"--data_dir={mnist_data_dir}", "--batch_size=500"]
    run_script("evaluate.py", *common, f"--output={run / 'one.json'}")
    horovodrun("evaluate.py", *common, f"--output={run / 'two.json'}")
    one = json.loads((run / "one.json").read_text())
    two = json.loads((run / "two.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["num_images"] == two["num_images"] == 10000
    # The per-image bits/dim are the same numbers; only the order of the float64 sums differs.
    assert two["bits_per_dim"] == pytest.approx(one["bits_per_dim"], rel=1e-9, abs=0)
    assert two["standard_error"] == pytest.approx(one["standard_error"], rel=1e-9, abs=0)


def test_a_class_conditional_run_under_horovodrun_trains_and_scores_as_one_process(
        equivalence, mnist_data_dir):
    """A class-conditional model with a classifier: 2 processes with batch 8 end within float32
    tolerance of 1 process with batch 16 (each rank's labels travel with its own images), and
    evaluate.py under horovodrun gathers the same class scores as one process."""
    root = equivalence.root
    common = [*equivalence.common, f"--data_dir={mnist_data_dir}", "--class_conditional",
              "--class_weight=0.01"]
    horovodrun("train.py", *common, f"--workdir={root / 'cond_two'}",
               "--per_replica_batch_size=8", "--init_batch_size=16")
    run_script("train.py", *common, f"--workdir={root / 'cond_one'}",
               "--per_replica_batch_size=16", "--init_batch_size=32")
    assert RunFolder(str(root / "cond_two")).load_config().model.num_classes == 10
    difference = max_weight_difference(root / "cond_two", root / "cond_one")
    assert difference < WEIGHT_TOLERANCE, difference
    run = root / "cond_one"
    scores = [f"--workdir={run}", f"--data_dir={mnist_data_dir}", "--batch_size=500"]
    run_script("evaluate.py", *scores, f"--output={run / 'one.json'}")
    horovodrun("evaluate.py", *scores, f"--output={run / 'two.json'}")
    one = json.loads((run / "one.json").read_text())
    two = json.loads((run / "two.json").read_text())
    assert two["processes"] == 2 and two["num_images"] == 10000
    assert two["bits_per_dim"] == pytest.approx(one["bits_per_dim"], rel=1e-9, abs=0)
    for name in ("bayes_accuracy", "classifier_accuracy"):
        assert two["classes"][name] == one["classes"][name]
    assert two["classes"]["marginal_bits_per_dim"] == pytest.approx(
        one["classes"]["marginal_bits_per_dim"], rel=1e-9, abs=0)


# A folder of images whose pixels name their index, so each rank's record says what it drew. A run
# in which rank 1 dies before step 5, then the same job resumed to step 6.

FOLDER_RUN = ["--preset=mnist", "--steps_per_level=1", "--hidden_width=8",
              "--per_replica_batch_size=4", "--init_batch_size=8", "--shuffle_buffer=16",
              "--warmup_steps=1", "--log_every_steps=1", "--checkpoint_every_steps=3",
              "--eval_every_steps=3", "--eval_max_batches=1", "--eval_batch_size=16",
              "--train_steps=6", "--scale_lr_by_workers", "--lr_schedule=constant",
              "--learning_rate=1e-3"]


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """Both runs with rank 1 writing to a workdir of its own: the first, in which rank 1 dies
    just before step 5 (so after the checkpoint and evaluation of step 3), and its resumption."""
    root = tmp_path_factory.mktemp("folder_runs")
    write_indexed_images(str(root / "images"), 96)
    runs = {}
    for name, probes in (("crashed", {"GLOW_TEST_EXIT_AT_STEP": "1:5"}), ("resumed", {})):
        (root / name).mkdir()
        probes.update(GLOW_TEST_RECORD_DIR=str(root / name), GLOW_TEST_OWN_WORKDIR="1")
        result = horovodrun("train.py", *FOLDER_RUN, f"--dataset=folder:{root / 'images'}",
                            f"--workdir={root / 'run'}", probes=probes,
                            expect_ok=name == "resumed")
        runs[name] = types.SimpleNamespace(result=result, ended=time.time(),
                                           records=records(root / name))
    return types.SimpleNamespace(run=root / "run", **runs)


def test_a_rank_that_dies_ends_the_job_and_the_last_checkpoint_loads(folder_runs):
    crashed = folder_runs.crashed
    output = crashed.result.stdout + crashed.result.stderr
    assert crashed.result.returncode != 0
    assert "Exit code: 3" in output, output[-3000:]
    # horovodrun terminates the other ranks at once (SIGTERM, SIGKILL 5 s later); rank 0's
    # pending allreduce fails as soon as its peer's connection drops.
    seconds = crashed.ended - crashed.records[1]["died_at"]
    assert seconds < 60, seconds
    assert "step 3" in crashed.records[0]["digests"]  # the checkpoint the resumed run reads
    # Neither rank completed step 5: rank 0 cannot without rank 1.
    assert [len(r["examples"]) for r in crashed.records] == [4, 4]


def test_ranks_hold_identical_weights_and_draw_disjoint_examples(folder_runs):
    (crashed0, crashed1), (rank0, rank1) = folder_runs.crashed.records, folder_runs.resumed.records
    # Bit for bit: after init, at the checkpoint of step 3, after the resume (the broadcast of
    # what rank 0 restored), at step 6 and at the end.
    assert crashed0["digests"] == crashed1["digests"]
    assert set(crashed0["digests"]) == {"start", "step 3"}
    assert rank0["digests"] == rank1["digests"]
    assert set(rank0["digests"]) == {"start", "step 6", "end"}
    assert rank0["digests"]["step 6"] != rank0["digests"]["start"]
    for ranks in ((crashed0, crashed1), (rank0, rank1)):
        drawn = [sorted(i for batch in record["examples"] for i in batch) for record in ranks]
        for rank, indices in enumerate(drawn):
            assert all(index % 2 == rank for index in indices), (rank, indices)
            assert len(indices) == len(set(indices)) == 4 * len(ranks[0]["examples"])
        assert not set(drawn[0]) & set(drawn[1])
    assert [len(r["examples"]) for r in (rank0, rank1)] == [3, 3]


def test_resume_under_horovodrun_continues_the_run(folder_runs):
    crashed, resumed = folder_runs.crashed, folder_runs.resumed
    assert re.search(r"resumed from \S+ckpt-3 at step 3", resumed.result.stdout)
    assert "finished at step 6" in resumed.result.stdout
    assert sorted(progress(resumed.result.stdout)) == [4, 5, 6]
    # Rank 0 restored the checkpoint of step 3 and rank 1 received it by broadcast: both hold
    # exactly the state (model, optimizer, step) the crashed run saved.
    assert resumed.records[0]["digests"]["start"] == crashed.records[0]["digests"]["step 3"]
    assert RunFolder(str(folder_runs.run)).load_model().step == 6


def test_only_rank_0_writes(folder_runs):
    run = folder_runs.run
    # Rank 1 was given the workdir <run>.rank1: whatever it wrote (checkpoint, config.json,
    # summaries, sample images) would be there.
    rank1_workdir = run.parent / "run.rank1"
    assert not rank1_workdir.exists() or not any(rank1_workdir.iterdir())
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "metrics.jsonl",
                                       "summaries"]
    assert sorted(os.listdir(run / "checkpoints")) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index",
        "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
    # One event file per run, named by rank 0's pid; the resumed run's has the sample images of
    # its evaluation at step 6.
    pids = {str(job.records[0]["pid"]) for job in (folder_runs.crashed, folder_runs.resumed)}
    events = os.listdir(run / "summaries")
    assert len(events) == 2 and {name.split(".")[-3] for name in events} == pids
    assert any("samples/" in (run / "summaries" / name).read_bytes().decode("latin-1")
               for name in events)


def test_learning_rate_scales_with_workers_only_when_asked(folder_runs, equivalence):
    for scale, peak in ((False, 1e-3), (True, 4e-3)):
        config = TrainConfig(learning_rate=1e-3, warmup_steps=1, scale_lr_by_workers=scale)
        assert training.Schedule(config, num_replicas=4)(0, 0.0) == pytest.approx(peak)
    # The flag reaches the optimizer: 2 processes, past the warm-up, with and without it.
    assert {lr for _, lr in progress(folder_runs.resumed.result.stdout).values()} == {2e-3}
    # A progress line shows the rate its step used: step 1 is in the 2-step warm-up.
    rates = {step: lr for step, (_, lr) in progress(equivalence.two.stdout).items()}
    assert rates == {1: 5e-4, 2: 1e-3, 3: 1e-3, 4: 1e-3, 5: 1e-3}


def test_a_time_budget_stops_every_rank_after_the_same_step_by_rank_0s_clock(tmp_path):
    """Adamax under a time budget, rank 1's clock running 10× fast: the ranks agree on rank 0's
    time after every step (else rank 1 would stop after a tenth of the budget and rank 0 would
    wait for it), stop after the first step that spends the budget, and hold the same state,
    Adamax's slots included, at every checkpoint."""
    budget = 30.0  # the first step (tracing) takes seconds of it on a loaded 2-core machine
    write_indexed_images(str(tmp_path / "images"), 64)
    (tmp_path / "records").mkdir()
    result = horovodrun("train.py", "--preset=mnist", "--steps_per_level=1", "--hidden_width=8",
                        "--per_replica_batch_size=4", "--init_batch_size=8",
                        "--shuffle_buffer=16", "--warmup_steps=1", "--log_every_steps=1",
                        "--eval_every_steps=0", "--optimizer=adamax", "--learning_rate=1e-3",
                        "--train_steps=100000", f"--max_train_seconds={budget}",
                        "--checkpoint_every_steps=10",
                        f"--dataset=folder:{tmp_path / 'images'}",
                        f"--workdir={tmp_path / 'run'}",
                        probes={"GLOW_TEST_RECORD_DIR": str(tmp_path / "records"),
                                "GLOW_TEST_CLOCK_RATE": "1:10"})
    rank0, rank1 = records(tmp_path / "records")
    steps = len(rank0["seconds"])
    assert f"finished at step {steps} (time budget spent)" in result.stdout, result.stdout[-3000:]
    assert rank0["seconds"] == rank1["seconds"]  # bit for bit: one clock, broadcast
    assert steps >= 2 and rank0["seconds"][-2] < budget <= rank0["seconds"][-1]
    assert rank0["digests"] == rank1["digests"]
    assert {f"step {s}" for s in range(10, steps, 10)} | {"start", "end"} <= set(rank0["digests"])
    loaded = RunFolder(str(tmp_path / "run"))
    assert loaded.load_config().train.optimizer == "adamax"
    assert loaded.load_model().step == steps


# Faults of a running job, one after another in one run folder, each job the same command
# resumed: SIGTERM to rank 1 alone; SIGTERM to horovodrun; SIGSTOP to rank 1; rank 1 hung while
# alive. Each is applied once both ranks have taken two steps.

FAULT_RUN = ["--preset=mnist", "--steps_per_level=1", "--hidden_width=8",
             "--per_replica_batch_size=4", "--init_batch_size=8", "--shuffle_buffer=16",
             "--log_every_steps=1", "--checkpoint_every_steps=1000", "--eval_every_steps=0",
             "--train_steps=100000"]


def wait_for_steps(record_dir, count, process, timeout=600):
    """Both ranks' records once each has taken ``count`` steps in this job."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the job ended before the fault"
        try:
            ranks = records(record_dir)
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or being written
            ranks = None
        if ranks and all(len(rank["examples"]) >= count for rank in ranks):
            return ranks
        time.sleep(0.5)
    raise AssertionError(f"no {count} steps in {timeout} s")


def newest_step(run):
    latest = RunFolder(str(run)).latest_checkpoint()
    return int(latest.rsplit("-", 1)[1]) if latest else 0


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    write_indexed_images(str(root / "images"), 64)
    command = [HOROVODRUN, "-np", "2", "--gloo", sys.executable, WORKER, "train.py", *FAULT_RUN,
               f"--dataset=folder:{root / 'images'}", f"--workdir={root / 'run'}"]

    def term_rank_1(process, ranks):
        os.kill(ranks[1]["pid"], signal.SIGTERM)

    def term_horovodrun(process, ranks):
        process.send_signal(signal.SIGTERM)

    def stop_rank_1(process, ranks):
        os.kill(ranks[1]["pid"], signal.SIGSTOP)

    def hang_rank_1_at_the_third_step(start_step):
        return {"GLOW_TEST_HANG_AT_STEP": f"1:{start_step + 3}"}

    jobs = {}
    for name, act, extra, probes in (
            ("term_rank_1", term_rank_1, [], None),
            ("term_horovodrun", term_horovodrun, [], None),
            ("stop_rank_1", stop_rank_1, [], None),
            ("hang_rank_1", None, ["--step_timeout_seconds=10"], hang_rank_1_at_the_third_step)):
        record_dir = root / name
        record_dir.mkdir()
        start_step = newest_step(root / "run")
        env = {**script_env(), "PYTHONUNBUFFERED": "1", "GLOW_TEST_RECORD_DIR": str(record_dir),
               **(probes(start_step) if probes else {})}
        with open(root / f"{name}.log", "w") as log:
            process = subprocess.Popen(command + extra, cwd=REPO, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            try:
                ranks = wait_for_steps(record_dir, 2, process)
                acted = time.time()
                if act:
                    act(process, ranks)
                process.wait(timeout=600)
            finally:
                if process.poll() is None:
                    process.kill()
        ended = time.time()
        last_metrics = RunFolder(str(root / "run")).read_metrics()[-1]
        jobs[name] = types.SimpleNamespace(
            returncode=process.returncode, output=(root / f"{name}.log").read_text(),
            records=records(record_dir), start_step=start_step, acted=acted, ended=ended,
            end_step=newest_step(root / "run"), last_metrics=last_metrics)
    return types.SimpleNamespace(run=root / "run", **jobs)


def stopped_line(job):
    """Rank 0's one line of a job stopped by a signal: (signal name, step, checkpoint)."""
    match = re.search(r"\[0\]<stderr>:train\.py: stopped: (SIG\w+) received, stopped at step "
                      r"(\d+): newest checkpoint (\S+); the same command resumes from it",
                      job.output)
    assert match, job.output[-3000:]
    return match[1], int(match[2]), match[3]


def assert_stopped_together_with_a_checkpoint(job, run):
    name, step, checkpoint = stopped_line(job)
    rank0, rank1 = job.records
    # Both ranks took the same steps, and hold the same state at the checkpoint rank 0 wrote.
    assert len(rank0["examples"]) == len(rank1["examples"]) == step - job.start_step
    assert rank0["digests"] == rank1["digests"] and f"step {step}" in rank0["digests"]
    assert checkpoint == str(run / "checkpoints" / f"ckpt-{step}") and job.end_step == step
    # The run folder says how the run ended, whatever horovodrun's exit code.
    assert job.last_metrics == {"kind": "end", "step": step, "stop_reason": f"{name} received",
                                "checkpoint": checkpoint}
    return name


def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step_with_a_checkpoint(faults):
    job = faults.term_rank_1
    assert job.returncode != 0 and "Exit code: 75" in job.output, job.output[-3000:]
    assert assert_stopped_together_with_a_checkpoint(job, faults.run) == "SIGTERM"
    assert job.ended - job.acted < 30, job.ended - job.acted


def test_sigterm_to_horovodrun_reaches_the_ranks_which_stop_with_a_checkpoint(faults):
    """horovodrun sends SIGTERM on to each process and SIGKILLs it 5 s later: enough for a
    step and a checkpoint of this model. The job resumed the previous job's checkpoint.

    horovodrun then reports the processes' code 75 and exits 1, or, when its launcher loses
    their exit statuses, prints nothing and exits 0: in horovod 0.28.1 the thread that forwarded
    the signal can reap a process's shell before the middleman's own wait does, which then reads
    0 (docs/DISTRIBUTED.md). Any other code it prints, or an exit 0 after printing one, fails."""
    job, before = faults.term_horovodrun, faults.term_rank_1
    printed = re.findall(r"Process \d+ exit with status code (\S+)\.", job.output)
    assert set(printed) <= {"75"}, job.output[-3000:]
    assert ((job.returncode == 1 and "Exit code: 75" in job.output)
            or (job.returncode == 0 and not printed)), job.output[-3000:]
    assert assert_stopped_together_with_a_checkpoint(job, faults.run) == "SIGTERM"
    assert job.ended - job.acted < 30, job.ended - job.acted
    assert f"resumed from {faults.run}/checkpoints/ckpt-{job.start_step} at step " \
           f"{job.start_step}" in job.output
    assert job.records[0]["digests"]["start"] == before.records[0]["digests"][
        f"step {job.start_step}"]


def test_a_rank_stopped_with_sigstop_ends_the_job_within_a_minute(faults):
    """Gloo's 30 s timeout fails the other rank's collective; horovodrun then SIGKILLs the
    stopped one 5 s after its SIGTERM."""
    job = faults.stop_rank_1
    assert job.returncode != 0 and "Timed out waiting" in job.output, job.output[-3000:]
    assert job.ended - job.acted < 60, job.ended - job.acted
    assert job.end_step == job.start_step  # no checkpoint: the resume repeats these steps
    assert job.last_metrics["kind"] == "train"  # not "end": the job did not end by itself


def test_a_rank_hung_while_alive_ends_the_job_through_the_watchdog(faults):
    job = faults.hang_rank_1
    assert job.returncode != 0 and "Exit code: 70" in job.output, job.output[-3000:]
    assert "no training step completed in 10 s after step" in job.output
    assert job.last_metrics["kind"] == "train"
    seconds = job.ended - job.records[1]["hung_at"]
    assert 10 <= seconds < 40, seconds


def test_a_rank_hung_before_its_first_step_ends_the_job_through_the_first_step_bound(
        tmp_path, mnist_data_dir):
    """Rank 1 hangs at the loop's start; rank 0 waits inside its first step, in the gradients'
    allreduce, as ranks that disagree on a collective would (the --remat names did, for 80
    minutes, before the gradients were named by position). --first_step_timeout_seconds ends
    the job: exit 70, and the message names that flag."""
    started = time.time()
    result = horovodrun("train.py", *FAULT_RUN, f"--workdir={tmp_path / 'run'}",
                        f"--data_dir={mnist_data_dir}", "--first_step_timeout_seconds=20",
                        probes={"GLOW_TEST_HANG_AT_STEP": "1:0"}, expect_ok=False)
    seconds = time.time() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Exit code: 70" in output, output[-3000:]
    assert "rank 1: hanging at the start, step 0" in output
    assert ("the first training step did not complete in 20 s from step 0 "
            "(--first_step_timeout_seconds)") in output, output[-3000:]
    assert not re.search(r"step\s+1\s+bits/dim", output)
    assert seconds < 300, seconds
