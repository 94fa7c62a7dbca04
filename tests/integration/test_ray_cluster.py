"""Beyond one machine, tested as a cluster: two Ray nodes on loopback (Ray's own
`Cluster` test utility starts each node's processes on this machine), an actor on each.
The run's chunks go to both nodes; when one node is killed mid-run, its chunk goes to
the actor left, and the run ends with every planned row once, equal to a run on one
machine. The engine in the actors is the fake one, slowed to a fixed rate: what is
tested is the placement and the loss of a node, not the model (the real vLLM engine in
two actors is `test_vllm.py::test_ray_two_actors_share_a_run`)."""

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from localgen.config import EngineSettings, GenerateConfig
from localgen.engines.ray_actors import RayEngine
from localgen.errors import EngineError
from localgen.generation.generate import GenerateResult, generate
from localgen.models.resolve import ModelRef
from tests.helpers import EXAMPLE_TASK

ray = pytest.importorskip("ray")
COMPARED = ["request_key", "id", "text", "label", "seed"]


def test_two_nodes_share_a_run_and_losing_one_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("LOCALGEN_FAKE_TOKENS_PER_S", "60")  # the nodes' actors inherit it
    node_args = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node_args)
    worker = cluster.add_node(**node_args)
    cluster.wait_for_nodes()
    config = GenerateConfig(
        task_path=EXAMPLE_TASK,
        out=tmp_path / "run",
        count=10,
        strategy=("zero-shot",),
        shard_rows=1,
        check_labels=False,
        quiet=True,
        engine=EngineSettings(name="fake", backend="none", replicas=2, ray_address=cluster.address),
    )
    said: list[str] = []
    try:
        engine = RayEngine(config.engine, ModelRef("fake", Path("."), "-"), said.append)
        actors = engine.describe()
        nodes = {a["node"] for a in actors}
        assert len(nodes) == 2 and worker.node_id in nodes  # one actor on each node
        on_worker = next(i for i, a in enumerate(actors) if a["node"] == worker.node_id)
        results: list[GenerateResult] = []
        run = threading.Thread(target=lambda: results.append(generate(config, engine=engine)))
        run.start()
        # The worker's actor has finished a chunk and holds the next: kill its node.
        deadline = time.monotonic() + 120
        while ray.get(engine.actors[on_worker].describe.remote())["handled"] == 0:
            assert time.monotonic() < deadline and run.is_alive(), "the worker took no chunk"
        cluster.remove_node(worker, allow_graceful=False)
        run.join(timeout=180)
        assert not run.is_alive() and results, "the run did not end after the node was lost"
        [result] = results
        assert engine.lost == 1 and len(engine.actors) == 1
        assert said and said[0].startswith("warning: a Ray actor was lost (")
        # With no actor left, a run stops with one line (and, having stored nothing,
        # leaves nothing).
        ray.kill(engine.actors[0])
        with pytest.raises(EngineError, match="every Ray actor is gone .*rerun the same"):
            generate(replace(config, out=tmp_path / "gone"), engine=engine)
        assert not (tmp_path / "gone").exists()
    finally:
        if "engine" in locals():
            engine.close()
        cluster.shutdown()
    assert result.written == 40 and result.failures == []
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert rows.height == 40 and rows["request_key"].n_unique() == 40
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["engine"]["lost_actors"] == 1 and manifest["status"] == "complete"
    # The same rows as the same plan run on one machine, without Ray.
    alone = generate(replace(config, out=tmp_path / "alone", engine=EngineSettings(name="fake")))
    assert alone.written == 40
    whole = pl.read_parquet(tmp_path / "alone" / "synthetic.parquet").select(COMPARED)
    assert rows.select(COMPARED).sort("request_key").equals(whole.sort("request_key"))
