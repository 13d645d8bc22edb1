"""The Dagster UI's view of the graph: a real dagster-webserver, queried over GraphQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import dagster as dg

from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.partitions import catalog_drops
from pinlanding_assets_tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
GROUPS = {"catalog", "attributes", "encoder", "demand", "collections", "site"}
ASSET_GRAPH = """{ assetNodes { assetKey { path } groupName description kinds
  owners { ... on TeamAssetOwner { team } } dependencyKeys { path } automationCondition { label } } }"""
LATEST = """{ assetOrError(assetKey: {path: ["catalog_products"]}) { ... on Asset {
  assetMaterializations(limit: 1) { partition metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on MarkdownMetadataEntry { mdStr } } } } } }"""


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def test_webserver_shows_the_graph_and_metadata(broken_drop: Path, project_dirs: Path) -> None:
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["drop-broken"])
        assert dg.materialize(dg.load_assets_from_modules([catalog_assets]), partition_key="drop-broken",
                              instance=instance, resources=resources_for(),
                              selection=["catalog_products", "catalog_quarantine", "catalog_ground_truth"]).success
    port = free_port()
    server = subprocess.Popen(
        [Path(sys.executable).parent / "dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, timeout=180)
        nodes = {"/".join(n["assetKey"]["path"]): n for n in _graphql(port, ASSET_GRAPH)["assetNodes"]}
        assert {n["groupName"] for n in nodes.values()} == GROUPS
        assert len(nodes) >= 21
        for key, node in nodes.items():
            assert node["description"] and node["kinds"] and node["owners"], key
        feed_inputs = {"/".join(d["path"]) for d in nodes["collection_feeds"]["dependencyKeys"]}
        assert {"collections", "attribute_assignments"} <= feed_inputs
        assert nodes["landing_pages"]["kinds"] == ["html"]
        conditions = {key: (node["automationCondition"] or {}).get("label") for key, node in nodes.items()}
        assert conditions["catalog_products"] == "new drop"
        assert conditions["landing_pages"] == "publish the release in service"
        assert conditions["raw_vlm_attributes"] == "label after publishing"
        assert conditions["curated_vocabulary"] == "release cut"
        assert all(conditions[key] for key in nodes if key not in {"search_log", "merchandising_overrides"}), conditions
        latest = _graphql(port, LATEST)["assetOrError"]["assetMaterializations"][0]
        entries = {e["label"]: e for e in latest["metadataEntries"]}
        assert latest["partition"] == "drop-broken"
        assert entries["quarantined"]["intValue"] == 6 and entries["dagster/row_count"]["intValue"] == 41
        assert "|" in entries["preview"]["mdStr"], "a markdown table preview"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
