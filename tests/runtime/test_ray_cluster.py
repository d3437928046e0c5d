"""A two-node Ray cluster simulated on this machine (``ray.cluster_utils.Cluster``: a head and a worker
node of one CPU each): a short training run places one actor on each node (the ``slow`` marker)."""
import csv
import logging
import os
import time

import pytest

from conftest import descendants, running, skip_module_without, small_config
from rtrl.runtime.backends import RayBackend
from rtrl.runtime.train import train

pytestmark = [pytest.mark.slow, pytest.mark.ray]
skip_module_without("ray")
import ray  # noqa: E402  (after the guard: without Ray this module is skipped, not an error)
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes():
    before = descendants(os.getpid())
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
    deadline = time.monotonic() + 15
    while running(descendants(os.getpid()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running(descendants(os.getpid()) - before), "Ray processes left running"


def test_a_short_run_puts_one_actor_on_each_node(tmp_path, two_nodes):
    nodes = []

    class NodeRecordingBackend(RayBackend):
        def next_batch(self):
            if not nodes:
                nodes.extend(self.actor_nodes())
            return super().next_batch()

    cfg = small_config(backend="ray", num_actors=2, actor_cpus=1.0, total_steps=400, log_interval=0.05)
    summary = train(cfg, tmp_path, backend_factory=NodeRecordingBackend, progress=False)
    assert summary["finished"] and summary["steps"] == 400
    assert len(set(nodes)) == 2 == len(ray.nodes())   # one actor on the head node, one on the worker node
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["step"] == "400" and rows[-1]["actor_restarts"] == "0" and float(rows[-1]["policy_lag"]) >= 0
