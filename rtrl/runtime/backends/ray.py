"""The Ray backend: actors anywhere in a Ray cluster; rollouts and weights travel through the object store.

    learner (the Ray driver)                         Ray actors (RayActor: one RolloutWorker each)
    ray.put(weights), once per broadcast  ──►  set_weights(version, ref)  (its own thread: only noted)
    actor.rollout.remote(version, ref)  ──►  load the newest weights noted, fill one rollout
    ray.wait: rollouts_in_flight per actor  ◄──  the rollout's tensors as numpy arrays (zero-copy)

Each actor owns ``envs_per_actor`` environments and a CPU copy of the agent, and returns rollouts
exactly as the local backend writes them (``RolloutWorker.fill``): T+1 steps, step 0 repeating the
previous rollout's last step, the agent state before step 0, and the weight version it acted with.
The learner keeps ``rollouts_in_flight`` requests per actor, collates ``batch_size / envs_per_actor``
rollouts as they arrive, and re-requests at once, so that actors step while the learner updates.

An actor whose environment raises, whose process is killed or whose node is lost is replaced by a
fresh one (fresh environments), ``ActorFailures`` deciding when failures end the run instead.

Ray is imported when a ``RayBackend`` is made, so that ``rtrl`` imports without it. An empty
``ray_address`` starts a private Ray on this machine (no dashboard, no usage reporting: no network)
and shuts it down at ``close``; ``auto`` or HOST:PORT joins a running cluster (docs/CLUSTER.md).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections import deque

import numpy as np
import torch

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.actor import RolloutWorker
from rtrl.runtime.backends.base import RolloutBackend
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.rollout import Rollout, collate, empty_rollout
from rtrl.settings import SettingError
from rtrl.tree import map_tensors, tensors_of


def import_ray():
    """The ``ray`` module, or a SettingError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise SettingError("{backend} needs Ray, which is not installed here: pip install 'rtrl[ray]'",
                           backend="ray") from None
    return ray


def encode(tree) -> list[np.ndarray]:
    """The tensors of a rollout (or a state dict) as numpy arrays: Ray ships those without a copy."""
    return [t.numpy() for t in tensors_of(tree)]


def from_store(array: np.ndarray) -> torch.Tensor:
    """A tensor on an array from Ray's object store, without a copy. Those arrays are read-only: copy
    the tensor before anything writes to it (``collate`` and ``load_state_dict`` copy)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def decode(arrays: list[np.ndarray], template):
    """The structure of ``template`` holding ``arrays`` (from ``encode``) as tensors (``from_store``)."""
    leaves = iter(arrays)
    return map_tensors(lambda _: from_store(next(leaves)), template)


def numpy_weights(model: Agent) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


class RayActor:
    """The body of one Ray actor: a RolloutWorker and the newest weights announced to it.

    ``weights`` is a one-item list holding the ObjectRef of a state dict (of numpy arrays); in a list,
    Ray passes the reference without fetching it, so that only weights actually used are fetched.
    """

    def __init__(self, actor_index: int, cfg: TrainConfig, spec: EnvSpec, version: int, weights: list):
        torch.set_num_threads(1)
        self.worker = RolloutWorker(actor_index, cfg, spec)
        self.buffer = empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, self.worker.model.initial_state(1))
        self.newest, self.loaded, self.lock = (version, weights), None, threading.Lock()

    def set_weights(self, version: int, weights: list) -> None:
        """Runs in the actor's "weights" thread, beside a rollout under way: only notes the newest."""
        with self.lock:
            if version > self.newest[0]:
                self.newest = (version, weights)

    def rollout(self, version: int, weights: list) -> list[np.ndarray]:
        """One rollout with the newest weights announced, as ``encode``d arrays. The request carries the
        newest broadcast when it was made: a ``set_weights`` still queued in the other thread cannot make
        a rollout act with older weights than those."""
        self.set_weights(version, weights)
        version, weights = self.newest
        if version != self.loaded:
            arrays = import_ray().get(weights[0])
            self.worker.load_weights({name: from_store(array) for name, array in arrays.items()}, version)
            self.loaded = version
        self.worker.fill(self.buffer)
        return encode(self.buffer)

    def node(self) -> str:
        return import_ray().get_runtime_context().get_node_id()


def start_ray(ray, cfg: TrainConfig) -> bool:
    """Join the cluster at ``cfg.ray_address`` or start a private Ray; False if Ray was running in this
    process already (a caller's: used as it is and left running)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")       # no usage report sent anywhere
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")   # a replaced actor's dropped requests
    options = dict(logging_level=logging.ERROR, log_to_driver=False)
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    if cfg.ray_address:
        check_reachable(cfg.ray_address)   # fail fast: ray.init waits minutes on an address nobody listens at
    try:
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, **options)
        else:  # "local": a new Ray even if `ray start` left one running here; this machine's cores, or as many
            # logical CPUs as the actors ask for (they then share the cores)
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(cfg.num_actors * cfg.actor_cpus)),
                     include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise SettingError(f"could not join a Ray cluster at {{ray_address}} ({error}); start one with `ray start "
                           "--head`, or leave {ray_address:name} empty for a private Ray on this machine (a cluster "
                           "with token authentication also needs RAY_AUTH_MODE=token and its token here)",
                           ray_address=cfg.ray_address) from None
    finally:
        for signum, handler in handlers.items():   # the caller's Ctrl-C / SIGTERM handling stays in force
            signal.signal(signum, handler)
    if not cfg.ray_address:
        watch_private_ray(ray)
    return True


def ray_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address given as HOST:PORT or ray://HOST:PORT; None for ``auto`` and the like."""
    address = address.strip().removeprefix("ray://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A SettingError naming ``address`` when nothing accepts a TCP connection at its HOST:PORT within
    ``timeout`` seconds (``auto`` is left to Ray, which finds a cluster started on this machine)."""
    target = ray_host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as error:
        raise SettingError(f"could not reach a Ray cluster at {{ray_address}}: nothing accepts connections at "
                           f"{target[0]}:{target[1]} ({error.strerror or error}); start one with `ray start --head`, "
                           "or leave {ray_address:name} empty for a private Ray on this machine",
                           ray_address=address) from None


# A watchdog process per private Ray: when the driver dies (even by SIGKILL, which runs no cleanup), it stops
# every process of the driver's Ray session (Ray leaves its dashboard and runtime-env agents running).
_WATCHDOG = """
import os, signal, sys, time
driver, session = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)


def alive(pid):   # a killed driver whose parent has not reaped it yet is a zombie: gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


while alive(driver):
    time.sleep(0.5)
time.sleep(2.0)   # Ray's own shutdown first


def belongs(pid):   # Ray renames its processes (ray::DashboardAgent): their open log files name the session
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if session.encode() in f.read():
                return True
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if session in os.readlink(f"/proc/{pid}/fd/{fd}"):
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


# sweep until 10 sweeps in a row find nothing (at most 2 minutes): on a loaded machine a Ray process can still be
# starting, spawned by one killed a moment later, after a fixed number of sweeps has ended
quiet, give_up = 0, time.monotonic() + 120
while quiet < 10 and time.monotonic() < give_up:
    found = False
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if belongs(pid):
            found = True
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    quiet = 0 if found else quiet + 1
    time.sleep(1.0)
"""


def watch_private_ray(ray) -> None:
    """Start the watchdog of this process's private Ray session (Linux: it reads /proc); best effort."""
    try:
        node = ray._private.worker._global_node
        session = os.path.basename(node.get_session_dir_path())
    except Exception:   # a Ray without these internals: no watchdog
        return
    if not session.startswith("session_") or not os.path.isdir("/proc"):
        return
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), session], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


class RayBackend(RolloutBackend):
    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        super().__init__(cfg, cfg.num_actors)
        self.ray = ray = import_ray()
        self.started_ray = start_ray(ray, cfg)
        self.actors, self.pending = [], []   # pending[slot]: its rollout requests' ObjectRefs, oldest first
        try:
            state = map_tensors(torch.Tensor.cpu, model.initial_state(1))
            self.template = empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, state)
            self.newest = (0, [ray.put(numpy_weights(model))])
            self.remote_actor = ray.remote(concurrency_groups={"weights": 1})(RayActor).options(
                num_cpus=cfg.actor_cpus, max_restarts=0)
            self.spec = spec
            for slot in range(cfg.num_actors):
                self.actors.append(self._start(slot))
                self.pending.append(deque())
                self._request(slot, cfg.rollouts_in_flight)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def state_copies(cfg: TrainConfig) -> int:
        """Each actor's own states and its rollout buffer's, the rollouts in flight in the object store, and
        the learner's collated batch."""
        return cfg.num_actors * (2 + cfg.rollouts_in_flight) * cfg.envs_per_actor + cfg.batch_size

    def _start(self, stream: int):
        return self.remote_actor.remote(stream, self.cfg, self.spec, *self.newest)

    def _request(self, slot: int, count: int = 1) -> None:
        for _ in range(count):
            self.pending[slot].append(self.actors[slot].rollout.remote(*self.newest))

    def _replace(self, slot: int, report: str) -> None:
        stream = self.failures.failed(slot, report)   # raises ActorError when no restart is left
        self._kill(self.actors[slot])
        self.actors[slot], self.pending[slot] = self._start(stream), deque()   # its requests are lost with it
        self._request(slot, self.cfg.rollouts_in_flight)

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        """Waits on the oldest request of each actor only: an actor's rollouts arrive in the order it
        made them (``ray.wait`` on all requests may return a later one first)."""
        ray, rollouts = self.ray, []
        while len(rollouts) < self.rollouts_per_batch:
            oldest = {requests[0]: slot for slot, requests in enumerate(self.pending) if requests}
            ready, _ = ray.wait(list(oldest), num_returns=1, timeout=1.0)
            for ref in ready:
                slot = oldest[ref]
                self.pending[slot].popleft()
                try:
                    arrays = ray.get(ref)
                except ray.exceptions.RayError as error:   # the env raised, the actor or its node died
                    self._replace(slot, str(error))
                    continue
                self.failures.delivered(slot)
                rollouts.append(decode(arrays, self.template))
                self._request(slot)
        return collate(rollouts)   # copies out of the object store

    def broadcast(self, model: Agent, version: int) -> None:
        self.newest = (version, [self.ray.put(numpy_weights(model))])   # the newest weights sent: (version, [ref])
        for actor in self.actors:
            actor.set_weights.options(concurrency_group="weights").remote(*self.newest)

    def actor_nodes(self) -> list[str]:
        """The Ray node id of each actor, in slot order."""
        return self.ray.get([actor.node.remote() for actor in self.actors])

    def _kill(self, actor) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # gone already, or Ray is shutting down
            pass

    def close(self) -> None:
        for actor in self.actors:
            self._kill(actor)
        self.actors, self.pending = [], []
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()
