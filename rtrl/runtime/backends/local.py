"""The local backend: actor processes on this machine, shared-memory rollouts, one pipe per actor.

The learner owns ``buffer_count`` rollouts in shared memory, dealt out among the actors. It sends an
actor the index of one of its free slots; the actor fills that rollout with the latest published
weights and sends the index back; the learner collates ``batch_size / envs_per_actor`` full slots
into a batch and hands them back to their actors. Weights are published into a shared-memory copy of
the agent under a sequence counter: a reader retries while a write is under way, so there is no lock
that a killed actor could leave held, and no queue shared by the actors that it could leave broken.

An actor whose environment raises, or whose process dies, is replaced by a fresh process with fresh
environments; the slots it had not returned go to the replacement (``ActorFailures`` decides when
failures end the run instead).
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import torch
import torch.multiprocessing as mp

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.actor import RolloutWorker, exit_with_parent
from rtrl.runtime.backends.base import RolloutBackend
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.rollout import Rollout, collate, empty_rollout
from rtrl.settings import SettingError, literal


def check_sendable(env_fn) -> None:
    """A ``SettingError`` if the spawned actors could not receive ``env_fn`` (they unpickle it by name)."""
    try:
        pickle.dumps(env_fn)
        problem = None
    except Exception as error:  # pickle raises PicklingError, AttributeError or TypeError, by object
        problem = f"it cannot be pickled: {error}"
    else:
        main = sys.modules.get("__main__")
        if getattr(env_fn, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
            problem = "it is defined in an interactive session, which the actor processes cannot import"
    if problem:
        raise SettingError(literal(f"env_fn {env_fn!r} cannot be sent to the actor processes ({problem}); they are "
                                   "spawned and receive it by pickling: give a class or a function defined at the "
                                   "top level of a module or script (or a functools.partial of one), not a lambda "
                                   "or a nested function; or set ") + "{num_actors:name} to 0 to step the "
                           "environments in this process", num_actors=True)


class SharedWeights:
    """The agent's weights and their version in shared memory: written by the learner, read by actors.

    ``sequence[0]`` is odd while a write is under way, ``sequence[1]`` holds the version. A reader that
    saw the same even sequence number before and after its copy has a whole set of weights (stores
    become visible in program order on the CPUs this runs on; a torn read is retried).
    """

    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        self.model = build_agent(cfg, spec)
        self.model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        self.model.share_memory()
        self.sequence = torch.zeros(2, dtype=torch.int64).share_memory_()

    def write(self, model: Agent, version: int) -> None:
        self.sequence[0] += 1
        with torch.no_grad():
            for shared, new in zip(self.model.state_dict().values(), model.state_dict().values()):
                shared.copy_(new)
        self.sequence[1] = version
        self.sequence[0] += 1

    def read_into(self, worker: RolloutWorker) -> None:
        while True:
            before = int(self.sequence[0])
            if before % 2 == 0:
                worker.load_weights(self.model, int(self.sequence[1]))
                if int(self.sequence[0]) == before:
                    return
            time.sleep(0.001)


def actor_process(actor_index: int, cfg: TrainConfig, spec: EnvSpec, weights: SharedWeights,
                  rollouts: list[Rollout], conn, learner_pid: int) -> None:
    """Process entry point: fill the slots whose indices arrive on ``conn`` until None arrives (or the
    learner's end closes); send back ("full", index) per rollout, or ("error", traceback) and stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner process handles Ctrl-C and stops us
    torch.set_num_threads(1)
    exit_with_parent(learner_pid)
    try:
        worker = RolloutWorker(actor_index, cfg, spec)
        while (index := conn.recv()) is not None:
            weights.read_into(worker)  # the latest published weights, fixed for the rollout
            worker.fill(rollouts[index])
            conn.send(("full", index))
        worker.close()
    except EOFError:  # the learner is gone
        pass
    except Exception:  # report to the learner, which replaces us or ends the run
        conn.send(("error", traceback.format_exc()))


@dataclass
class _Actor:
    process: mp.Process
    conn: object                                   # the learner's end of the pipe
    filling: set[int] = field(default_factory=set)  # slots sent and not returned yet


class LocalBackend(RolloutBackend):
    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        if spec.env_fn is not None:
            check_sendable(spec.env_fn)
        super().__init__(cfg, cfg.num_actors)
        self.spec = spec
        self.ctx = mp.get_context("spawn")
        self.weights = SharedWeights(cfg, spec, model)
        template = self.weights.model.initial_state(1)
        self.rollouts = [empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, template, shared=True)
                         for _ in range(cfg.buffer_count)]
        self.actors = [self._start(i) for i in range(cfg.num_actors)]
        self.full: list[int] = []                  # filled slots, in the order they arrived
        for index in range(len(self.rollouts)):   # slot j belongs to actor j % num_actors
            self._send(index)

    @staticmethod
    def state_copies(cfg: TrainConfig) -> int:
        """Each actor's own states, every shared rollout slot's, and the learner's collated batch."""
        return (cfg.num_actors + cfg.buffer_count) * cfg.envs_per_actor + cfg.batch_size

    def _start(self, stream: int) -> _Actor:
        learner_end, actor_end = self.ctx.Pipe()
        process = self.ctx.Process(target=actor_process, daemon=True, name=f"rtrl-actor-{stream}",
                                   args=(stream, self.cfg, self.spec, self.weights, self.rollouts, actor_end,
                                         os.getpid()))
        process.start()
        actor_end.close()
        return _Actor(process, learner_end)

    def _send(self, index: int) -> None:
        actor = self.actors[index % len(self.actors)]
        actor.filling.add(index)
        try:
            actor.conn.send(index)
        except OSError:  # it died; the next wait sees its sentinel and replaces it with this slot
            pass

    def _service(self, slot: int) -> None:
        """Take the messages of actor ``slot``; replace it if it failed or died."""
        actor = self.actors[slot]
        while actor.conn.poll():
            try:
                kind, payload = actor.conn.recv()
            except (EOFError, OSError):
                break
            if kind == "error":
                return self._replace(slot, payload)
            actor.filling.discard(payload)
            self.full.append(payload)
            self.failures.delivered(slot)
        if not actor.process.is_alive():
            self._replace(slot, f"its process {actor.process.pid} died without a report "
                                f"(exit code {actor.process.exitcode})")

    def _replace(self, slot: int, report: str) -> None:
        stream = self.failures.failed(slot, report)   # raises ActorError when no restart is left
        old = self.actors[slot]
        self._stop(old)
        self.actors[slot] = self._start(stream)
        for index in sorted(old.filling):
            self._send(index)

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        while len(self.full) < self.rollouts_per_batch:
            owners = {}
            for slot, actor in enumerate(self.actors):
                owners[actor.conn] = owners[actor.process.sentinel] = slot
            for slot in sorted({owners[ready] for ready in wait(list(owners), timeout=1.0)}):
                self._service(slot)
        indices, self.full = self.full[:self.rollouts_per_batch], self.full[self.rollouts_per_batch:]
        out = collate([self.rollouts[i] for i in indices])  # copies: the slots can be refilled at once
        for index in indices:
            self._send(index)
        return out

    def broadcast(self, model: Agent, version: int) -> None:
        self.weights.write(model, version)

    @staticmethod
    def _stop(actor: _Actor, timeout: float = 1.0) -> None:
        if actor.process.is_alive():
            actor.process.terminate()
            actor.process.join(timeout)
            if actor.process.is_alive():
                actor.process.kill()
        actor.process.join(timeout)
        actor.conn.close()

    def close(self, timeout: float = 10.0) -> None:
        for actor in self.actors:
            try:
                actor.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for actor in self.actors:
            actor.process.join(max(0.0, deadline - time.monotonic()))
            self._stop(actor)
