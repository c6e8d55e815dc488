"""Training in several processes, on one host or many, on each backend's own engine.

Every process of a launch runs the same command; process 0 is the chief.

- JAX: `jax.distributed.initialize` (multi-controller runtime; cross-process CPU
  collectives through gloo) and `keras.distribution.DataParallel` over the global device
  mesh (`sgma_keras.distribution`).
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy`, configured by `TF_CONFIG`.
- PyTorch: Keras's torch backend has no multi-process data parallel; asking for more
  than one process raises `MultiProcessUnsupported`, never a silent one-process run.

Where the launch comes from (`requested_launch`), first match wins:

1. the command line: `--num-processes N --process-id I --coordinator HOST:PORT[,...]`
   (TensorFlow needs one address per process: it becomes `TF_CONFIG`);
2. Keras's variables `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
   `KERAS_DISTRIBUTION_NUM_PROCESSES`, `KERAS_DISTRIBUTION_PROCESS_ID`;
3. `TF_CONFIG` with more than one task (TensorFlow);
4. a SLURM step of several tasks (`SLURM_NTASKS` > 1): JAX's own SLURM detection,
   TensorFlow's `SlurmClusterResolver`.

Small values (the run folder's claim, the choices made on validation, the test
results) go from the chief to the other processes through the engine's key-value
store (`chief_value`, `gather_values`): no file has to be polled, and a chief that
fails sends its error, so every process stops with the same message.
"""

import contextlib
import dataclasses
import json
import os

from sgma_keras.atomic_io import json_ready
from sgma_keras.errors import UserError

# How long a process waits for the chief's value (choices, test results): the chief
# may evaluate a large test set alone meanwhile. A chief that dies is noticed by the
# engine (its connection or heartbeat), not by this timeout.
WAIT_FOR_CHIEF_S = 24 * 3600
# How long JAX waits for every process to connect (`jax.distributed.initialize`).
CONNECT_TIMEOUT_S = 300

TORCH_MESSAGE = (
    "{count} training processes were asked for ({source}), but Keras's PyTorch backend "
    "has no multi-process data parallel; train with KERAS_BACKEND=jax or "
    "KERAS_BACKEND=tensorflow, or in one process."
)


class MultiProcessError(UserError):
    """A launch of several processes that cannot start or cannot go on."""


class MultiProcessUnsupported(MultiProcessError):
    """More than one process on a backend without a multi-process engine (PyTorch)."""


class OtherProcessFailed(MultiProcessError):
    """Another process of the launch stopped with an error; this one stops too."""


@dataclasses.dataclass(frozen=True)
class Launch:
    """The processes of one training run.

    Attributes:
        count: number of processes (1: not a multi-process launch).
        index: this process's id; 0 is the chief.
        addresses: "host:port" of the coordinator (JAX) or of every process (TF), or
            None where the engine finds them itself (SLURM).
        source: what asked for it, named in messages ("--num-processes", "TF_CONFIG", ...).
    """

    count: int = 1
    index: int = 0
    addresses: tuple | None = None
    source: str = "one process"


_STATE = {"launch": Launch(), "initialized": False, "strategy": None, "calls": {}}


def launch():
    """The launch this process belongs to (one process until `initialize`)."""
    return _STATE["launch"]


def process_count():
    return _STATE["launch"].count


def process_index():
    return _STATE["launch"].index


def is_chief():
    """Whether this process writes the run folder (process 0)."""
    return _STATE["launch"].index == 0


def _int(value, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MultiProcessError(f"{what}={value!r}: expected a whole number.") from None


def _split_addresses(text, what):
    addresses = tuple(a.strip() for a in str(text).split(",") if a.strip())
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise MultiProcessError(f"{what}={text!r}: expected HOST:PORT[,HOST:PORT...], "
                                    f"e.g. 127.0.0.1:12345; {address!r} is not.")
    return addresses


def _tf_config_launch(text):
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise MultiProcessError(f"TF_CONFIG is not a TensorFlow cluster spec ({error}); "
                                'expected {"cluster": {"worker": [...]}, "task": '
                                '{"type": "worker", "index": 0}}.') from None
    count = len(chiefs) + len(workers)
    if kind not in ("chief", "worker"):
        raise MultiProcessError(f"TF_CONFIG task type {kind!r}: expected 'worker' or 'chief' "
                                "(MultiWorkerMirroredStrategy has no parameter servers).")
    position = index if kind == "chief" else len(chiefs) + index
    return Launch(count, position, tuple(chiefs + workers), "TF_CONFIG")


def requested_launch(coordinator=None, num_processes=None, process_id=None, environ=None,
                     backend=None):
    """The `Launch` the command-line flags or the environment ask for (see the module
    docstring); one process when nothing does. Raises MultiProcessError on flags that
    do not fit together."""
    environ = os.environ if environ is None else environ
    flags = {"--coordinator": coordinator, "--num-processes": num_processes,
             "--process-id": process_id}
    keras_env = {k: environ.get(k) for k in ("KERAS_DISTRIBUTION_JOB_ADDRESSES",
                                            "KERAS_DISTRIBUTION_NUM_PROCESSES",
                                            "KERAS_DISTRIBUTION_PROCESS_ID")}
    if any(v is not None for v in flags.values()):
        given, source = flags, "--num-processes/--process-id/--coordinator"
    elif any(v is not None for v in keras_env.values()):
        given = dict(zip(flags, keras_env.values()))
        source = "KERAS_DISTRIBUTION_* variables"
    else:
        given = None
    if given is not None:
        count = _int(given["--num-processes"], "number of processes") \
            if given["--num-processes"] is not None else None
        index = _int(given["--process-id"], "process id") \
            if given["--process-id"] is not None else None
        if count is None or index is None or given["--coordinator"] is None:
            missing = [k for k, v in given.items() if v is None]
            raise MultiProcessError(f"A multi-process launch needs {', '.join(flags)}; "
                                    f"{', '.join(missing)} missing ({source}).")
        if count < 1 or not 0 <= index < count:
            raise MultiProcessError(f"process id {index} of {count} processes: expected "
                                    f"0 <= id < {count} ({source}).")
        addresses = _split_addresses(given["--coordinator"], "--coordinator")
        if backend == "tensorflow" and count > 1 and len(addresses) != count:
            raise MultiProcessError(
                f"TensorFlow needs the address of every process: --coordinator got "
                f"{len(addresses)} address(es) for {count} processes; give "
                "HOST0:PORT0,HOST1:PORT1,... in process-id order.")
        return Launch(count, index, addresses, source)
    if environ.get("TF_CONFIG") and backend in (None, "tensorflow"):
        found = _tf_config_launch(environ["TF_CONFIG"])
        if found.count > 1:
            return found
    tasks = environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS")
    if tasks and _int(tasks, "SLURM_NTASKS") > 1:
        return Launch(_int(tasks, "SLURM_NTASKS"), _int(environ.get("SLURM_PROCID", 0),
                                                      "SLURM_PROCID"), None, "SLURM")
    return Launch()


def initialize(coordinator=None, num_processes=None, process_id=None):
    """Starts this process's part of a multi-process launch (once; later calls return
    the launch). Call before any TensorFlow op or JAX computation.

    Returns the `Launch`; one process when no flag or variable asks for more.
    """
    if _STATE["initialized"]:
        return _STATE["launch"]
    import keras

    backend = keras.backend.backend()
    wanted = requested_launch(coordinator, num_processes, process_id, backend=backend)
    if wanted.count > 1:
        if backend == "jax":
            _start_jax(wanted)
        elif backend == "tensorflow":
            wanted = _start_tensorflow(wanted)
        else:
            raise MultiProcessUnsupported(TORCH_MESSAGE.format(count=wanted.count,
                                                               source=wanted.source))
        _prime_keras_saving()
    _STATE.update(launch=wanted, initialized=True)
    return wanted


def _prime_keras_saving():
    """Makes Keras's model saving create no variable, so the chief can save alone.

    `model.save` / `save_weights` build a throwaway `Optimizer` to list the attribute
    names to skip (`saving_lib.get_attr_skipset`), on every call: its cache is read
    under another key than it is written (Keras 3.15). Under a multi-process
    distribution creating a variable is a step all processes take together (TF
    broadcasts its initial value; JAX checks it is the same everywhere), so a
    chief-only save would wait for the others, or break their next collective. The
    names are computed here once, outside any distribution, and stored under both
    keys (this thread's Keras state: saves run in the main thread).
    """
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    skipset = saving_lib.get_attr_skipset("Optimizer")
    for key in ("saving_attr_skiplist_Optimizer", "saving_attr_skipset_Optimizer"):
        global_state.set_global_attribute(key, skipset)


def _start_jax(wanted):
    import jax

    # CPU collectives between processes (gloo); accelerators use their own (NCCL).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if wanted.source == "SLURM":
        jax.distributed.initialize(initialization_timeout=CONNECT_TIMEOUT_S)
    else:
        jax.distributed.initialize(coordinator_address=wanted.addresses[0],
                                   num_processes=wanted.count, process_id=wanted.index,
                                   initialization_timeout=CONNECT_TIMEOUT_S)
    if jax.process_count() != wanted.count or jax.process_index() != wanted.index:
        raise MultiProcessError(
            f"JAX started process {jax.process_index()} of {jax.process_count()}, not "
            f"{wanted.index} of {wanted.count} ({wanted.source}).")


def _start_tensorflow(wanted):
    import tensorflow as tf

    resolver = None
    if wanted.source == "SLURM":
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
    elif wanted.source != "TF_CONFIG":
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": list(wanted.addresses)},
            "task": {"type": "worker", "index": wanted.index},
        })
    _STATE["strategy"] = _multi_worker_strategy(tf)(cluster_resolver=resolver)
    if wanted.source == "SLURM":
        wanted = Launch(wanted.count, int(resolver.task_id), None, "SLURM")
    return wanted


def _multi_worker_strategy(tf):
    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """`MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3's TensorFlow
        trainer hands it: a nested batch (`_maybe_symbolic_build`) and scalar logs
        with `axis=0` (`reduce_per_replica`). The strategy itself reduces one value at
        a time and fails on both (keras-team/keras#20585)."""

        def reduce(self, reduce_op, value, axis):
            def one(v):
                local = self.experimental_local_results(v)[0]
                rank = getattr(getattr(local, "shape", None), "rank", None)
                return super(MultiWorkerStrategy, self).reduce(
                    reduce_op, v, axis if rank else None)

            return tf.nest.map_structure(one, value)

    return MultiWorkerStrategy


def tensorflow_strategy():
    """The launch's `MultiWorkerMirroredStrategy` (TensorFlow, several processes)."""
    return _STATE["strategy"]


@contextlib.contextmanager
def process_local():
    """Code inside creates and computes on this process's devices only.

    Under JAX's multi-process `DataParallel` every new variable is placed on the global
    mesh, which all processes must do together; a chief-only save (Keras builds a
    throwaway optimizer variable while saving) or a chief-only evaluation would wait
    for them forever. Inside this block the distribution is off (Keras keeps it per
    thread). TensorFlow's strategy scope cannot be left this way: chief-only code runs
    outside `distribution_scope` there.
    """
    if process_count() == 1 or _backend() != "jax":
        yield
        return
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def _backend():
    import keras

    return keras.backend.backend()


# --------------------------------------------------------------------------
# Values between processes (the engine's key-value store)
# --------------------------------------------------------------------------


def _key(name):
    """A fresh key: every process makes the same calls in the same order."""
    calls = _STATE["calls"]
    calls[name] = calls.get(name, 0) + 1
    return f"sgma_keras/{name}/{calls[name]}"


def _kv_set(key, text):
    if _backend() == "jax":
        from jax._src import distributed

        distributed.global_state.client.key_value_set(key, text)
    else:
        from tensorflow.python.eager import context

        context.context().set_config_key_value(key, text)


def _kv_get(key, timeout_s=WAIT_FOR_CHIEF_S):
    if _backend() == "jax":
        from jax._src import distributed

        return distributed.global_state.client.blocking_key_value_get(key, int(timeout_s * 1000))
    from tensorflow.python.eager import context

    return context.context().get_config_key_value(key, int(timeout_s * 1000))


def _error_line(error):
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    if isinstance(error, UserError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def chief_value(name, compute):
    """`compute()` on the chief (inside `process_local`), its JSON value on every process.

    One process: just `compute()`. If the chief's `compute` raises, the chief re-raises
    and every other process raises `OtherProcessFailed` with its message.
    """
    if process_count() == 1:
        return compute()
    key = _key(name)
    if is_chief():
        try:
            with process_local():
                value = compute()
            text = json.dumps({"value": json_ready(value)})
        except BaseException as error:
            _kv_set(key, json.dumps({"error": _error_line(error)}))
            raise
        _kv_set(key, text)
        return value
    message = json.loads(_kv_get(key))
    if "error" in message:
        raise OtherProcessFailed(f"process 0 of {process_count()} (the chief) stopped: "
                                 f"{message['error']}")
    return message["value"]


def chief_first(name, compute):
    """`compute()` on the chief, then (once it succeeded) on every other process; each
    returns its own result. For work that fills a shared cache, such as a dataset
    download."""
    if process_count() == 1:
        return compute()
    results = []
    chief_value(name, lambda: results.append(compute()))
    return results[0] if is_chief() else compute()


def gather_values(name, value):
    """[value of process 0, value of process 1, ...] (JSON values), on every process."""
    if process_count() == 1:
        return [value]
    key = _key(name)
    _kv_set(f"{key}/{process_index()}", json.dumps(json_ready(value)))
    return [json.loads(_kv_get(f"{key}/{i}")) for i in range(process_count())]


# --------------------------------------------------------------------------
# A lost process
# --------------------------------------------------------------------------

# Words of the engines' errors when another process is gone (gloo and the JAX
# coordination service; TensorFlow's collectives and its coordination service).
_LOST_PEER_WORDS = ("gloo", "connection reset", "socket closed", "heartbeat",
                    "coordination service", "unavailable", "failed to connect",
                    "connection refused", "collective ops is aborted")


# Of those, the words that name the cause (TensorFlow's first line is often only
# "UnavailableError: Graph execution error:").
_CAUSE_WORDS = ("connection reset", "socket closed", "heartbeat", "failed to connect",
                "connection refused", "aborted by")


def lost_peer_message(error):
    """One line for an engine error that means another process of the launch is gone,
    else None."""
    if process_count() == 1 or isinstance(error, UserError):
        return None
    text = f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if any(word in line.lower() for word in _LOST_PEER_WORDS)]
    if not telling:
        return None
    named = [line for line in telling if any(word in line.lower() for word in _CAUSE_WORDS)]
    telling = named or telling
    # The engine's line that names the cause (its first line is often only "Graph
    # execution error:" or a chain of "Error dispatching computation").
    cause = " ".join(telling[0].split())
    cause = cause if len(cause) <= 200 else cause[:200] + " ..."
    return (f"process {process_index()} of {process_count()}: another process of the launch "
            f"stopped or cannot be reached ({cause}); this one stops too. The other "
            "processes' output says which one ended first; run the same command again to "
            "resume from the last backup.")
