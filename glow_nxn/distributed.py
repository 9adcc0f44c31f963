"""Horovod, confined to this module, with a single-process fallback.

Everything else sees a :class:`Replicas` object: its ``size``, ``rank``, whether it is the chief
(rank 0, the only writer), and the few collectives training and evaluation need. Without Horovod
installed, or outside ``horovodrun``, :func:`connect` returns a one-process :class:`Replicas` whose
collectives are identities, so the library runs the same code either way.

Under ``horovodrun`` (Gloo), a process that exits non-zero ends the job: ``horovodrun`` terminates
the other processes (SIGTERM, then SIGKILL after 5 s) and exits non-zero itself, and a collective
left waiting on the dead process fails at once ("Horovod has been shut down"). A collective waiting
on a live but busy process (rank 0 preparing a dataset) waits as long as it takes: Gloo's timeout
(``HOROVOD_GLOO_TIMEOUT_SECONDS``, 30 s) does not cut it short, since the busy process's Horovod
thread keeps talking. A process stopped outright (SIGSTOP, a frozen machine) stops that thread
too: its peers' Gloo operations then time out after those 30 s, Horovod shuts down, and the job
ends (42 s after the SIGSTOP in tests/test_horovod.py). A process hung while alive is ended by
:class:`glow_nxn.training.Watchdog`. docs/DISTRIBUTED.md and docs/RELIABILITY.md have the
evidence.

**Names.** Horovod matches a collective across processes by its name and requires one dtype and
shape per name. Run eagerly without a name, every broadcast is called ``HorovodBroadcast`` and
every allgather ``HorovodAllgather``, whatever it carries; so the collectives that run eagerly
during training (the resume decision, the step's end time, the signals received, evaluation's
gathers) are named by what they carry, as Horovod's contract asks. Before they were, once in
the 40 jobs of two soaks (bench/soak.py), rank 1 kept its own clock reading for every step of a
job instead of rank 0's broadcast one (docs/RELIABILITY.md); that the shared default names caused
it is a suspicion, not a finding: a probe of 300 such broadcasts did not reproduce it.
"""
import os

import tensorflow as tf

_LAUNCHER_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


class Replicas:
    """A single process: ``size`` 1, ``rank`` 0, and collectives that return their input."""

    size = 1
    rank = 0

    @property
    def is_chief(self):
        return self.rank == 0

    def mean(self, t, name=None):
        """The cross-replica mean of a tensor (each replica passes its own)."""
        return t

    def gather(self, t, name):
        """Every replica's tensor, concatenated along axis 0 in rank order."""
        return t

    def broadcast_variables(self, variables):
        """Set ``variables`` on every replica to rank 0's values."""

    def broadcast(self, t, name):
        """Rank 0's value of a tensor, on every replica."""
        return t

    def gradients(self, tape, target, sources):
        """``tape.gradient(target, sources)``, averaged across replicas."""
        return tape.gradient(target, sources)

    def barrier(self):
        """Return once every replica has called it (e.g. the others wait while rank 0 prepares
        a dataset)."""


class HorovodReplicas(Replicas):
    """The processes of a ``horovodrun`` job (Horovod with Gloo, MPI or NCCL underneath)."""

    def __init__(self, hvd):
        self._hvd = hvd
        self.size, self.rank = hvd.size(), hvd.rank()

    def mean(self, t, name=None):
        return self._hvd.allreduce(t, op=self._hvd.Average, name=name)

    def gather(self, t, name):
        return self._hvd.allgather(t, name=name)

    def broadcast_variables(self, variables):
        # Horovod: one broadcast of every model and optimizer variable before the loop, so all
        # replicas start identical (fresh, after data-dependent init, or after a resume).
        self._hvd.broadcast_variables(variables, root_rank=0)

    def broadcast(self, t, name):
        return self._hvd.broadcast(t, root_rank=0, name=name)

    def gradients(self, tape, target, sources):
        # Horovod: gradients are allreduced (averaged) across replicas inside tape.gradient.
        # Replicas match collectives by name. By default Horovod names each by its gradient
        # tensor's graph name, which need not be the same on every rank: a tf.custom_gradient
        # (--remat's recompute) returns its gradients from one IdentityN whose outputs follow
        # the variables it captured, and under tf.recompute_grad (before d7df5b2) their order
        # followed a set's, so each rank named another variable's gradient ":8" and the job
        # hung or summed mismatched gradients. Generic names ("grad_<i>", i = the position in
        # ``sources``) are the same on every rank.
        return self._hvd.DistributedGradientTape(tape).gradient(target, sources,
                                                                use_generic_names=True)

    def barrier(self):
        # Horovod: horovod.tensorflow has no barrier; an allreduce completes only once every
        # replica has submitted it, so a scalar one is a barrier.
        self._hvd.allreduce(tf.constant(0), op=self._hvd.Sum, name="barrier")


def device_description():
    """What this process computes on, for the start-up line: its visible GPUs by name, or the CPU
    with the reason (a GPU machine whose CUDA set-up is broken must not train on the CPU
    silently)."""
    gpus = tf.config.get_visible_devices("GPU")
    if not gpus:
        built = "with" if tf.test.is_built_with_cuda() else "without"
        return f"CPU only (no GPU visible; TensorFlow built {built} CUDA)"
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
             for gpu in gpus]
    return ", ".join(f"{gpu.name.split('physical_device:')[-1]} ({name})"
                     for gpu, name in zip(gpus, names))


def launched_by_horovodrun():
    """True in a process that ``horovodrun`` (or mpirun) started."""
    return any(name in os.environ for name in _LAUNCHER_VARIABLES)


def connect():
    """The :class:`Replicas` of this job: Horovod's under ``horovodrun``, else a single process.

    Under Horovod, each process sees only the GPU of its local rank (one GPU per process).
    """
    if not launched_by_horovodrun():
        return Replicas()
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise RuntimeError("this process was started by horovodrun, but horovod.tensorflow does "
                           "not import; run ./install.sh to build Horovod") from error
    # Horovod: initialise the collective runtime (Gloo/MPI/NCCL) for this process.
    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        # Horovod: pin one GPU per process, by local rank.
        gpu = gpus[hvd.local_rank() % len(gpus)]
        tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpu, "GPU")
    return HorovodReplicas(hvd)
