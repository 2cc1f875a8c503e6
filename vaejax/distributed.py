"""Several processes, one job: where this process stands, and what it does when another dies.

    JAX_COORDINATOR_ADDRESS=node0:7777 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 vaejax train ...
    JAX_COORDINATOR_ADDRESS=node0:7777 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 vaejax train ...
    srun -n 2 vaejax train ...            # under Slurm: Slurm's own variables

Every process of a job runs the same command. A process learns its place from
`JAX_COORDINATOR_ADDRESS` (host:port of process 0, which serves the job's coordinator there),
`JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (all three, set by hand or by a launcher), or, in a
Slurm step of several tasks (`srun -n N`), from Slurm's variables as `jax.distributed` reads
them (`SLURM_VARIABLES`). `VAEJAX_DISTRIBUTED=auto` leaves it all to what
`jax.distributed.initialize()` detects by itself (a Cloud TPU slice, Open MPI, ...). Anything
else is a job of one process, and nothing here does anything. This module is the one place
that knows these names.

`initialize` calls `jax.distributed.initialize` (before any JAX computation) and starts a
watchdog thread: each process ticks a counter in the coordinator's key-value store, and a
process that has not ticked for `VAEJAX_PEER_TIMEOUT` seconds (default 60), or a coordinator
that no longer answers, stops this process with one line (`abort`), so that a job whose
process was killed ends, instead of waiting forever in a collective or a barrier. JAX's own
heartbeat timeout (three times that) is the backstop. A process that fails leaves at once
(`leave`, from the CLI) rather than waiting for the others at JAX's shutdown barrier, so the
others see it go: collectives with it fail at once (`explain` words that error), the
watchdog catches the rest. A process that fails tells the others why before it leaves, and
they end at once with one line each; process 0, which hosts the coordinator (JAX ends every
other process with a long fatal report when it goes), waits for them to go first. (When
process 0 is killed outright, that report is what the others print.)

The rest are small agreements between processes: `barrier`, and `publish` / `receive`
(process 0 tells the others an outcome, or its error) with `primary_first` built on them.
`finish` ends the job's coordinated part: every process reaches it, then the watchdog stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Mapping

import jax

ADDRESS = "JAX_COORDINATOR_ADDRESS"  # host:port of process 0
NUM_PROCESSES = "JAX_NUM_PROCESSES"
PROCESS_ID = "JAX_PROCESS_ID"  # 0 .. JAX_NUM_PROCESSES - 1
JAX_VARIABLES = (ADDRESS, NUM_PROCESSES, PROCESS_ID)
# What jax.distributed reads in a Slurm step (its SlurmCluster): all must be set.
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                   "SLURM_LOCALID")
AUTO = "VAEJAX_DISTRIBUTED"  # "auto": jax.distributed detects the cluster itself
PEER_TIMEOUT = "VAEJAX_PEER_TIMEOUT"
DEFAULT_PEER_TIMEOUT = 60.0
EXIT_CODE = 2  # a process that stops because another one did: a known error's exit code
_FOREVER_MS = 30 * 24 * 3600 * 1000  # barriers wait for the others' work; the watchdog guards
_KEYS = "vaejax/"
_STOP = f"{_KEYS}stop"  # "<index>:<why>": the first process that failed, and why
_LEFT = f"{_KEYS}left/"  # <index>: that process is ending


class DistributedSetupError(ValueError):
    """The environment describes a multi-process job incompletely or wrongly."""


class PeerLostError(RuntimeError):
    """Another process of the job died or stopped: this one cannot go on."""


class PrimaryFailedError(RuntimeError):
    """Process 0 failed at a step the others wait for; its error, passed on."""


# -- where this process stands ------------------------------------------------------------


def peer_timeout(environ: Mapping[str, str] | None = None) -> float:
    """`VAEJAX_PEER_TIMEOUT` in seconds: how long a silent process is waited for."""
    environ = os.environ if environ is None else environ
    text = environ.get(PEER_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_PEER_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1:
        raise DistributedSetupError(f"{PEER_TIMEOUT}={text!r} must be a number of seconds >= 1.")
    return value


def place(environ: Mapping[str, str] | None = None) -> dict | None:
    """The arguments of `jax.distributed.initialize` for this process: the three JAX_*
    variables that are set (under Slurm, jax finds what is not set in Slurm's variables), {}
    in a Slurm step of several tasks or with VAEJAX_DISTRIBUTED=auto, None for a job of one
    process.

    Raises `DistributedSetupError` (one line) naming what is missing or malformed."""
    environ = os.environ if environ is None else environ
    given = {name: environ.get(name, "").strip() for name in JAX_VARIABLES}
    auto = environ.get(AUTO, "").strip()
    if auto not in ("", "auto"):
        raise DistributedSetupError(f"{AUTO}={auto!r}: the one value is 'auto' (let "
                                    "jax.distributed detect the cluster); unset it otherwise.")
    slurm = all(name in environ for name in SLURM_VARIABLES)
    if slurm:
        try:
            slurm = int(environ["SLURM_NTASKS"]) > 1
        except ValueError:
            raise DistributedSetupError(
                f"SLURM_NTASKS={environ['SLURM_NTASKS']!r} is not a number.") from None
    detected = slurm or bool(auto)  # jax.distributed finds what is not given
    if not any(given.values()):
        return {} if detected else None
    missing = [name for name, value in given.items() if not value]
    if missing and not detected:
        raise DistributedSetupError(
            f"{', '.join(n for n in JAX_VARIABLES if given[n])} is set but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: a multi-process job needs all three of "
            f"{ADDRESS} (host:port of process 0), {NUM_PROCESSES} and {PROCESS_ID} "
            f"(0 .. {NUM_PROCESSES} - 1), or none of them for one process.")
    args = {}
    if given[ADDRESS]:
        host, _, port = given[ADDRESS].rpartition(":")
        if not host or not port.isdigit():
            raise DistributedSetupError(f"{ADDRESS}={given[ADDRESS]!r} must be host:port "
                                        "(process 0's address and a free port on it).")
        args["coordinator_address"] = given[ADDRESS]
    for name, key in ((NUM_PROCESSES, "num_processes"), (PROCESS_ID, "process_id")):
        if given[name]:
            if not given[name].isdigit():
                raise DistributedSetupError(f"{name}={given[name]!r} must be a whole number.")
            args[key] = int(given[name])
    count, index = args.get("num_processes"), args.get("process_id")
    if count is not None and count < 1:
        raise DistributedSetupError(f"{NUM_PROCESSES}={count} must be at least 1.")
    if count is not None and index is not None and index >= count:
        raise DistributedSetupError(
            f"{PROCESS_ID}={index} must be below {NUM_PROCESSES}={count} (0 .. {count - 1}).")
    if count == 1 and not detected:
        return None  # a job of one process
    return args


def multiprocess() -> bool:
    """This process is one of several of an initialized job."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_primary() -> bool:
    """Process 0 of a job, or the only process: the one that writes a run's records."""
    return not multiprocess() or jax.process_index() == 0


# -- starting and ending ------------------------------------------------------------------

# "lost": the processes this one's watchdog found silent (process 0 waits for no word
# from them when it ends the job).
_state = {"what": "vaejax", "watchdog": None, "counts": {}, "lost": set()}
_abort_lock = threading.Lock()


def initialize(what: str = "vaejax", environ: Mapping[str, str] | None = None) -> bool:
    """Joins the job this process belongs to (see `place`) and starts its watchdog; True if
    it is one of a multi-process job. Idempotent; must run before any JAX computation.

    `what` names the command in messages ("vaejax train"). Raises `DistributedSetupError`
    (one line) if the variables are incomplete or the job cannot be joined in time
    (5 x VAEJAX_PEER_TIMEOUT: the other processes must start meanwhile)."""
    _state["what"] = what
    if jax.distributed.is_initialized():
        _watch()
        return True
    args = place(environ)
    if args is None:
        return False
    timeout = peer_timeout(environ)
    wait = int(5 * timeout)
    # JAX aborts a process that cannot join in time with a long fatal report: this says it
    # in one line first, and ends the process (JAX waits a little longer).
    not_joined = threading.Timer(wait, _end, args=(EXIT_CODE, (
        f"{what}: error: could not join the job ({_describe(args)}) within {wait} s: "
        f"{_NOT_JOINED}"), None))
    not_joined.daemon = True
    not_joined.start()
    try:
        jax.distributed.initialize(**args, initialization_timeout=wait + 30,
                                   heartbeat_timeout_seconds=int(3 * timeout),
                                   shutdown_timeout_seconds=int(2 * timeout))
    except RuntimeError as error:
        if "must be called before" in str(error):
            raise  # a programming error: JAX computed before initialize
        raise DistributedSetupError(f"could not join the job ({_describe(args)}): "
                                    f"{first_line(error)}. {_NOT_JOINED}") from None
    except ValueError as error:  # jax's own checks of what it read (Slurm)
        raise DistributedSetupError(f"jax.distributed: {first_line(error)}") from None
    finally:
        not_joined.cancel()
    _watch()
    return True


_NOT_JOINED = ("start every process of the job, each with the same command (or unset "
               f"{', '.join(JAX_VARIABLES)} to run as one process).")


def finish() -> None:
    """The end of the job's coordinated part: waits until every process gets here, then
    stops the watchdog, so that processes ending one after another do not alarm it."""
    if not multiprocess():
        return
    barrier("finish")
    watchdog = _state["watchdog"]
    _state["watchdog"] = None
    if watchdog is not None:
        watchdog.stop()


def leave(code: int, reason: str | None = None) -> None:
    """Ends a process of a multi-process job that failed at once (after printing why:
    `reason`), so that the others see it go; returns, doing nothing, in a job of one
    process."""
    if multiprocess():
        _end(code, None, reason)


def abort(message: str, code: int = EXIT_CODE) -> None:
    """Prints `message` (one line) and ends the process at once."""
    _end(code, message, message)


def _end(code: int, message: str | None, reason: str | None) -> None:
    """Ends the process: no atexit, where JAX's shutdown barrier would wait for the others.
    It first tells the others why (`reason`; their watchdogs read it at once and end with
    one line each). Process 0 serves the job's coordinator, whose end makes JAX abort every
    other process with a long report, so it waits a moment for them to go first."""
    if not _abort_lock.acquire(blocking=False):
        while True:  # another thread is ending the process
            time.sleep(60)
    if message:
        print(message, file=sys.stderr, flush=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        if _state["watchdog"] is not None and multiprocess():  # joined: tell the others
            client, index, count = _client(), jax.process_index(), jax.process_count()
            client.key_value_set(f"{_LEFT}{index}", "1", allow_overwrite=True)
            why = (reason or "").strip().splitlines()[:1] or [f"exit code {code}"]
            with contextlib.suppress(Exception):  # set already: another process failed first
                client.key_value_set(_STOP, f"{index}:{why[0][:300]}")
            if index == 0:
                deadline = time.monotonic() + min(10.0, 2 * _interval(peer_timeout()) + 2)
                while time.monotonic() < deadline:
                    left = {int(key.rstrip("/").rsplit("/", 1)[-1])
                            for key, _ in client.key_value_dir_get(_LEFT)}
                    if len(left | _state["lost"] | {0}) >= count:
                        break
                    time.sleep(0.1)
    os._exit(code)


def explain(error: BaseException) -> BaseException:
    """`error`, or a `PeerLostError` saying so if it is how a collective or a barrier fails
    when another process of the job has gone (Gloo's "Connection closed by peer", the
    coordination service's errors)."""
    if not multiprocess() or isinstance(error, (PeerLostError, PrimaryFailedError)):
        return error
    text = str(error)
    markers = ("Gloo", "Connection closed by peer", "Connection reset by peer",
               "coordination service", "heartbeat", "Barrier", "UNAVAILABLE", "DEADLINE_EXCEEDED")
    if not any(marker in text for marker in markers):
        return error
    return PeerLostError(
        f"another process of this {jax.process_count()}-process job stopped "
        f"({first_line(error)}). {_RERUN}")


_RERUN = ("What was finished and checkpointed is kept: run the same command again in every "
          "process to resume.")


# -- agreements ---------------------------------------------------------------------------


def _client():
    from jax._src import distributed as jax_distributed  # noqa: PLC0415  (jax keeps it there)

    return jax_distributed.global_state.client


def _key(name: str) -> str:
    """A key unique to the `count`-th use of `name`: every process makes the same calls in
    the same order, so they agree on it."""
    count = _state["counts"].get(name, 0)
    _state["counts"][name] = count + 1
    return f"{_KEYS}{name}/{count}"


def barrier(name: str) -> None:
    """Waits until every process of the job gets here (no-op for one process). A process
    that dies meanwhile is the watchdog's to report."""
    if multiprocess():
        _client().wait_at_barrier(_key(f"barrier/{name}"), _FOREVER_MS)


def publish(name: str, value=None, *, error: BaseException | None = None) -> None:
    """Process 0 tells the others `value` (JSON), or that it failed with `error`."""
    if not multiprocess():
        return
    message = ({"error": f"{type(error).__name__}: {first_line(error)}"} if error is not None
               else {"value": value})
    _client().key_value_set(_key(f"outcome/{name}"), json.dumps(message))


def receive(name: str):
    """What process 0 published under `name` (waiting for it); its error, if it failed,
    raised as `PrimaryFailedError`."""
    message = json.loads(_client().blocking_key_value_get(_key(f"outcome/{name}"), _FOREVER_MS))
    if "error" in message:
        raise PrimaryFailedError(f"process 0 of the job failed: {message['error']}")
    return message["value"]


@contextlib.contextmanager
def primary_first(name: str):
    """Process 0 runs the block first, then the others run it (usually doing nothing there
    but reading what process 0 wrote); if it fails on process 0, the others raise its error.
    For one process: just the block."""
    if not multiprocess():
        yield
        return
    if is_primary():
        try:
            yield
        except BaseException as error:
            publish(name, error=error)
            raise
        publish(name)
    else:
        receive(name)
        yield


# -- the watchdog -------------------------------------------------------------------------


def _watch() -> None:
    if multiprocess() and _state["watchdog"] is None:
        _state["watchdog"] = _Watchdog(_client(), jax.process_index(), jax.process_count(),
                                       peer_timeout())
        _state["watchdog"].start()


def _interval(timeout: float) -> float:
    return min(5.0, max(0.5, timeout / 10))


class _Watchdog(threading.Thread):
    """Ticks this process's counter in the coordinator's key-value store and reads the
    others': a counter that has not moved for `timeout` seconds (by this process's clock,
    so hosts' clocks need not agree), a store that no longer answers, or another process
    failing (`_STOP`, waited for between ticks, so seen at once) aborts."""

    def __init__(self, client, index: int, count: int, timeout: float):
        super().__init__(name="vaejax-watchdog", daemon=True)
        self.client, self.index, self.count, self.timeout = client, index, count, timeout
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=self.timeout)

    def run(self) -> None:
        what = _state["what"]
        interval_ms = int(1000 * _interval(self.timeout))
        seen: dict[int, tuple[str | None, float]] = {}
        ticks = 0
        while not self._stop_event.is_set():
            ticks += 1
            try:
                try:
                    why = self.client.blocking_key_value_get(_STOP, interval_ms)
                except Exception as error:  # noqa: BLE001
                    if "DEADLINE_EXCEEDED" not in str(error):
                        raise
                    why = None  # the usual case: nobody stopped the job meanwhile
                if self._stop_event.is_set():
                    return
                who, _, why = (why or "").partition(":")
                if who and who != str(self.index):
                    abort(f"{what}: error: process {who} of this {self.count}-process job "
                          f"stopped ({why}); process {self.index} stops too. {_RERUN}")
                self.client.key_value_set(f"{_KEYS}alive/{self.index}", str(ticks),
                                          allow_overwrite=True)
                entries = self.client.key_value_dir_get(f"{_KEYS}alive/")
            except Exception as error:  # noqa: BLE001  (any failure of the store: it is gone)
                if self._stop_event.is_set():
                    return
                abort(f"{what}: error: process {self.index} of {self.count} lost contact with "
                      f"the job's coordinator (process 0): {first_line(error)}. {_RERUN}")
            now = time.monotonic()
            values = {}
            for key, value in entries:
                with contextlib.suppress(ValueError):
                    values[int(key.rstrip("/").rsplit("/", 1)[-1])] = value
            silent = []
            for other in range(self.count):
                value = values.get(other)
                if other == self.index:
                    continue
                if other not in seen or seen[other][0] != value:
                    seen[other] = (value, now)
                elif now - seen[other][1] > self.timeout:
                    silent.append(other)
            if silent and not self._stop_event.is_set():
                _state["lost"].update(silent)
                which = (f"process {silent[0]}" if len(silent) == 1
                         else "processes " + ", ".join(map(str, silent)))
                abort(f"{what}: error: {which} of this {self.count}-process job "
                      f"{'has' if len(silent) == 1 else 'have'} given no sign of life for "
                      f"{self.timeout:.0f} s (killed, crashed or hung; see its own output); "
                      f"process {self.index} stops too. {_RERUN}")


def first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 300 characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."


def _describe(args: dict) -> str:
    parts = [f"{k}={v}" for k, v in args.items()]
    return ", ".join(parts) or "as jax.distributed detects it"
