"""Release and publish rules, search-week bounds: an ephemeral Dagster instance, events reported by hand."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pinlanding_assets.collections.publish_scope import MixedReleaseError, of_release, require_settled
from pinlanding_assets.partitions import (
    catalog_drops,
    concat_partitions,
    model_releases,
    next_release_key,
    search_weeks_for,
    superseded_rows,
    week_key,
)
from pinlanding_assets.refresh.keys import ATTRIBUTE_ASSIGNMENTS, COLLECTION_FEEDS, COLLECTIONS, LANDING_PAGES, PRODUCT_EMBEDDINGS
from pinlanding_assets.refresh.releases import (
    ReleaseRecord,
    Snapshot,
    drop_states,
    drops_due_for_vlm_stage,
    publish_due,
    publishable_release,
    release_due,
    release_record,
    scored_versions,
)
from pinlanding_assets.refresh.sensors import changed_weeks


def _materialize(instance: dg.DagsterInstance, asset: str, partition: str, **metadata) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition, metadata=metadata))


def test_release_is_due_on_new_labels_never_while_one_is_built() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["d1", "d2"])
        assert not release_due(instance, 0.5, 7).due, "nothing labelled yet"
        _materialize(instance, "raw_vlm_attributes", "d1", labelled_products=40)
        assert "waits for the labels of d2" in release_due(instance, 0.5, 7).reason
        _materialize(instance, "raw_vlm_attributes", "d2", labelled_products=40)
        first = release_due(instance, 0.5, 7)
        assert first.due and first.new_labelled == 80 and "first release" in first.reason
        instance.add_dynamic_partitions(model_releases.name, ["r001"])
        assert "still being built" in release_due(instance, 0.5, 7).reason
        _materialize(instance, "model_release", "r001", drops=["d1", "d2"])
        assert not release_due(instance, 0.5, 7).due, "no labels new to r001"
        instance.add_dynamic_partitions(catalog_drops.name, ["d3"])
        _materialize(instance, "raw_vlm_attributes", "d3", labelled_products=20)
        assert not release_due(instance, 0.5, 7).due, "20 new = 25% of 80 < 50%"
        assert release_due(instance, 0.25, 7).due
        assert release_due(instance, 0.5, 0.0).due, "an old release with anything new is replaced"
        assert next_release_key(instance.get_dynamic_partitions(model_releases.name)) == "r002"


def test_publishing_waits_until_every_drop_is_settled_for_the_release() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_drops.name, ["d1", "d2"])
        instance.add_dynamic_partitions(model_releases.name, ["r001", "r002"])
        assert publishable_release(instance) is None and drops_due_for_vlm_stage(instance) == {"d1", "d2"}
        _materialize(instance, "model_release", "r001")
        _materialize(instance, "attribute_assignments", "d1", release="r001")
        assert publishable_release(instance) is None, "d2 is not scored yet"
        _materialize(instance, "attribute_assignments", "d2", release="r001")
        assert publishable_release(instance) == "r001"
        assert drops_due_for_vlm_stage(instance) == set(), "nothing published yet: labelling waits"
        _materialize(instance, "landing_pages", "r001", drops_on_pages={"d1": 0})
        assert drops_due_for_vlm_stage(instance) == set(), "pages built before the drops were scored show neither"
        _materialize(instance, "landing_pages", "r001", drops_on_pages=scored_versions(instance, "r001"))
        assert drops_due_for_vlm_stage(instance) == {"d1", "d2"}, "read from what the pages were built from"
        assert publish_due(instance) is None, "published after the last change"
        _materialize(instance, "attribute_assignments", "d2", release="r001")
        assert publish_due(instance) == "r001" and drops_due_for_vlm_stage(instance) == {"d1"}
        _materialize(instance, "model_release", "r002")  # a new release in service: r001 is not published again
        _materialize(instance, "attribute_assignments", "d1", release="r002")
        assert [s.state for s in drop_states(instance, "r002")] == ["scored", "stale"]
        assert publishable_release(instance) is None, "never a mix of r001 and r002"
        with pytest.raises(MixedReleaseError, match="d2: scored with r001"):
            require_settled("r002", drop_states(instance, "r002"))
        _materialize(instance, "attribute_assignments", "d2", release="r002")
        assert publishable_release(instance) == "r002"
        busy = Snapshot(before=10**9, drops=("d1", "d2"), in_progress={ATTRIBUTE_ASSIGNMENTS: frozenset({"d2"})})
        assert publishable_release(instance, busy) is None, "a tick that saw d2 being re-scored waits"


def test_a_release_publishes_only_its_own_drops() -> None:
    frames = {"d1": pl.DataFrame({"product_id": ["a"], "release": ["r002"]}),
              "d2": pl.DataFrame({"product_id": ["b"], "release": ["r001"]})}
    rows, left_out = of_release(frames, "r002", ["d1", "d2", "d3"])
    assert rows["product_id"].to_list() == ["a"]
    assert left_out["drop"].to_list() == ["d2", "d3"]
    assert "scored with r001, not r002" in left_out["reason"][0] and "no assignments" in left_out["reason"][1]
    with pytest.raises(MixedReleaseError, match="no drop is scored with release r003"):
        of_release(frames, "r003", ["d1", "d2"])


def test_a_product_in_several_drops_keeps_its_newest_drops_rows() -> None:
    frames = {"d2": pl.DataFrame({"product_id": ["a", "a", "c"], "title": ["A new", "A new", "C"]}),
              "d1": pl.DataFrame({"product_id": ["a", "b"], "title": ["A old", "B"]}),
              "d3": pl.DataFrame({"product_id": ["b"], "title": ["B newest"]})}
    landed = ["d1", "d2", "d3"]
    table = concat_partitions(frames, landed)
    assert table.sort("product_id", "title").rows() == [("a", "A new"), ("a", "A new"), ("b", "B newest"), ("c", "C")]
    lazy = concat_partitions({d: f.lazy() for d, f in frames.items()}, landed)
    assert isinstance(lazy, pl.LazyFrame) and lazy.collect().sort("product_id", "title").equals(table.sort("product_id", "title"))
    assert concat_partitions(frames, ["d3", "d2", "d1"]).sort("product_id")["title"].to_list() == ["A old", "B", "C"]
    assert superseded_rows(frames, landed).rows() == [("d1", "a"), ("d1", "b")]
    release = {d: f.with_columns(pl.lit("r1").alias("release")) for d, f in frames.items()}
    rows, _ = of_release(release, "r1", landed)
    assert rows.filter(pl.col("product_id") == "b")["title"].to_list() == ["B newest"]


def test_search_weeks_are_bounded_by_the_log_and_changes_are_reported(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    for week in ("2006-W09", "2006-W11"):
        (log / f"searches-{week}.tsv").write_text("user_id\tquery\tsearched_at\n1\tred dress\t2006-03-01 10:00:00\n")
    (log / "notes.txt").write_text("not a week file")
    weeks = search_weeks_for(log)
    assert weeks.get_partition_keys() == ["2006-02-27", "2006-03-06", "2006-03-13"], "the empty week in between is kept"
    assert week_key(__import__("datetime").date(2006, 2, 27)) == "2006-02-27"
    with dg.instance_for_test() as instance:
        events, outside = changed_weeks(log, weeks, instance)
        assert [e.partition for e in events] == ["2006-02-27", "2006-03-13"] and outside == []
        for event in events:
            instance.report_runless_asset_event(event)
        assert changed_weeks(log, weeks, instance) == ([], [])
        (log / "searches-2006-W11.tsv").write_text("user_id\tquery\tsearched_at\n2\tboots\t2006-03-14 10:00:00\n")
        os.utime(log / "searches-2006-W11.tsv", ns=(1, 1))
        (log / "searches-2006-W12.tsv").write_text("user_id\tquery\tsearched_at\n")
        events, outside = changed_weeks(log, weeks, instance)
        assert [e.partition for e in events] == ["2006-03-13"] and outside == ["2006-03-20"]


INTAKE_AND_EMBEDDING = ("catalog_products", "catalog_image_features", "product_embeddings")


def _stand_in(specs: list[dg.AssetSpec]) -> dg.AssetsDefinition:
    """The graph's assets as specs: only their automation conditions are evaluated, nothing is run."""

    @dg.multi_asset(specs=specs, can_subset=True, name="stand_in")
    def stand_in():
        raise AssertionError("never run: only the conditions are evaluated")

    return stand_in


def _d1_scored_with_r001(instance: dg.DagsterInstance, *published: str) -> None:
    """Drop d1 taken in and scored with release r001 (in service); ``published``: r001's publish assets."""
    instance.add_dynamic_partitions(catalog_drops.name, ["d1"])
    instance.add_dynamic_partitions(model_releases.name, ["r001"])
    for asset in INTAKE_AND_EMBEDDING:
        _materialize(instance, asset, "d1")
    _materialize(instance, "model_release", "r001")
    _materialize(instance, "attribute_assignments", "d1", release="r001")
    for asset in published:
        _materialize(instance, asset, "r001")


def test_a_materialization_during_a_tick_never_splits_a_publish() -> None:
    """A drop's scoring run finishes while a tick is being evaluated. A publish condition reading the
    live instance would see the drop scored for the pages while the feeds (evaluated on the tick's
    snapshot) do not, and the pages would be published without it.
    Every publish asset must see the tick's snapshot: nothing this tick, feeds and pages together next."""
    from pinlanding_assets.refresh.conditions import PUBLISH

    class RunFinishesMidTick(dg.AutomationCondition):
        """Reports d2's assignments the first time it is evaluated (the root asset, before the others)."""
        instance = None

        @property
        def name(self) -> str:
            return "run_finishes_mid_tick"

        def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
            if RunFinishesMidTick.instance is not None:
                _materialize(RunFinishesMidTick.instance, "attribute_assignments", "d2", release="r001")
                RunFinishesMidTick.instance = None
            return dg.AutomationResult(true_subset=context.get_empty_subset(), context=context)

    specs = [dg.AssetSpec("catalog_products", partitions_def=catalog_drops,
                          automation_condition=RunFinishesMidTick())]
    specs += [dg.AssetSpec(key, partitions_def=catalog_drops, deps=["catalog_products"])
              for key in ("catalog_image_features", "product_embeddings", "attribute_assignments")]
    every_drop = dg.AllPartitionMapping()
    specs += [dg.AssetSpec("model_release", partitions_def=model_releases),
              dg.AssetSpec("collection_feeds", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=[dg.AssetDep("attribute_assignments", partition_mapping=every_drop)]),
              dg.AssetSpec("landing_pages", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=["collection_feeds", dg.AssetDep("catalog_products", partition_mapping=every_drop)])]
    defs = dg.Definitions(assets=[_stand_in(specs)])
    with dg.instance_for_test() as instance:
        _d1_scored_with_r001(instance, "collection_feeds", "landing_pages")
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        # a new drop arrives; its intake is done and its scoring run finishes during the next tick
        instance.add_dynamic_partitions(catalog_drops.name, ["d2"])
        for asset in INTAKE_AND_EMBEDDING:
            _materialize(instance, asset, "d2")
        RunFinishesMidTick.instance = instance
        during = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert RunFinishesMidTick.instance is None, "the run finished during the tick"
        assert during.total_requested == 0, "d2 was not scored when the tick began: nothing is published"
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=during.cursor)
        assert after.total_requested == 2, "feeds and pages are published together"
        assert after.get_requested_partitions(COLLECTION_FEEDS) == {"r001"}
        assert after.get_requested_partitions(LANDING_PAGES) == {"r001"}


def test_a_labelling_run_never_holds_back_a_publish() -> None:
    """New VLM labels feed the next release, so a drop's labelling run (in progress for minutes) must not
    block the release in service from publishing: the conditions are evaluated inside a real run that
    is labelling d1, after a new week's demand intents came in."""
    from pinlanding_assets.refresh.conditions import PUBLISH

    every_drop = dg.AllPartitionMapping()
    specs = [dg.AssetSpec(key, partitions_def=catalog_drops) for key in (*INTAKE_AND_EMBEDDING, "attribute_assignments")]
    specs += [dg.AssetSpec("model_release", partitions_def=model_releases),
              dg.AssetSpec("demand_intents", partitions_def=model_releases),
              dg.AssetSpec("collections", partitions_def=model_releases, automation_condition=PUBLISH, deps=[
                  "demand_intents", dg.AssetDep("attribute_assignments", partition_mapping=every_drop),
                  dg.AssetDep("raw_vlm_attributes", partition_mapping=every_drop)])]

    during: list[dg.EvaluateAutomationConditionsResult] = []

    @dg.asset(partitions_def=catalog_drops)
    def raw_vlm_attributes(context) -> None:
        during.append(dg.evaluate_automation_conditions(defs=defs, instance=context.instance, cursor=cursor))

    defs = dg.Definitions(assets=[_stand_in(specs), raw_vlm_attributes])
    with dg.instance_for_test() as instance:
        _d1_scored_with_r001(instance, "demand_intents", "collections")
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        _materialize(instance, "demand_window", "2006-03-20")  # a new week's demand
        dg.materialize([raw_vlm_attributes], instance=instance, partition_key="d1", selection=[raw_vlm_attributes])
        assert during and during[0].get_requested_partitions(COLLECTIONS) == {"r001"}


def test_drops_landing_together_are_published_whole_in_one_run() -> None:
    """Three drops register in one tick: nothing is published while any of them is unscored, then every
    publish asset (whatever its own inputs) is requested in the same tick, for the same release: one run
    (the daemon test counts the runs)."""
    from pinlanding_assets.refresh.conditions import PUBLISH

    every_drop = dg.AllPartitionMapping()
    specs = [dg.AssetSpec(key, partitions_def=catalog_drops) for key in
             (*INTAKE_AND_EMBEDDING, "catalog_ground_truth", "attribute_assignments")]
    specs += [dg.AssetSpec("model_release", partitions_def=model_releases),
              dg.AssetSpec("collections", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=[dg.AssetDep("attribute_assignments", partition_mapping=every_drop)]),
              dg.AssetSpec("collection_comparison", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=["collections", dg.AssetDep("catalog_ground_truth", partition_mapping=every_drop)]),
              dg.AssetSpec("landing_pages", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=["collections", dg.AssetDep("catalog_products", partition_mapping=every_drop)])]
    defs = dg.Definitions(assets=[_stand_in(specs)])
    publish = {dg.AssetKey(k) for k in ("collections", "collection_comparison", "landing_pages")}
    with dg.instance_for_test() as instance:
        _d1_scored_with_r001(instance, "collections", "collection_comparison")
        _materialize(instance, "landing_pages", "r001", drops_on_pages=scored_versions(instance, "r001"))
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        instance.add_dynamic_partitions(catalog_drops.name, ["d2", "d3", "d4"])
        for drop in ("d2", "d3", "d4"):
            for asset in (*INTAKE_AND_EMBEDDING, "catalog_ground_truth"):
                _materialize(instance, asset, drop)
            if drop != "d4":
                _materialize(instance, "attribute_assignments", drop, release="r001")
        waiting = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert waiting.total_requested == 0, "d4 is not scored: no page is built without it"
        _materialize(instance, "attribute_assignments", "d4", release="r001")
        ready = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=waiting.cursor)
        assert ready.total_requested == 3 and all(
            ready.get_requested_partitions(key) == {"r001"} for key in publish), "the whole publish in one tick"
        assert drops_due_for_vlm_stage(instance) == {"d1"}, "the new drops are labelled only once on the pages"


def test_an_edit_of_the_overrides_file_publishes_again(tmp_path: Path) -> None:
    """The sensor's report of an edited overrides file makes the release in service due: its feeds and
    pages are requested together, once."""
    from pinlanding_assets.refresh.conditions import PUBLISH
    from pinlanding_assets.refresh.sensors import overrides_event

    every_drop = dg.AllPartitionMapping()
    specs = [dg.AssetSpec(key, partitions_def=catalog_drops) for key in (*INTAKE_AND_EMBEDDING, "attribute_assignments")]
    specs += [dg.AssetSpec("model_release", partitions_def=model_releases),
              dg.AssetSpec("collection_feeds", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=[dg.AssetDep("attribute_assignments", partition_mapping=every_drop),
                                 "merchandising_overrides"]),
              dg.AssetSpec("landing_pages", partitions_def=model_releases, automation_condition=PUBLISH,
                           deps=["collection_feeds"])]
    defs = dg.Definitions(assets=[_stand_in(specs), dg.AssetSpec("merchandising_overrides")])
    path = tmp_path / "merchandising.toml"
    with dg.instance_for_test() as instance:
        _d1_scored_with_r001(instance, "collection_feeds", "landing_pages")
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert quiet.total_requested == 0 and publish_due(instance) is None
        path.write_text('[collections.jeans]\npin = { "15970" = 1 }\n')
        instance.report_runless_asset_event(overrides_event(path, instance))
        assert publish_due(instance) == "r001"
        edited = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert edited.get_requested_partitions(COLLECTION_FEEDS) == {"r001"}
        assert edited.get_requested_partitions(LANDING_PAGES) == {"r001"}


def test_scores_older_than_their_embeddings_hold_the_publish() -> None:
    """A release re-embeds a drop after it was scored: until the re-scoring lands (its run not even
    queued yet), the drop is pending and nothing is published, so no publish run can meet it half done."""
    with dg.instance_for_test() as instance:
        _d1_scored_with_r001(instance)
        assert publishable_release(instance) == "r001"
        _materialize(instance, "product_embeddings", "d1")
        assert [s.state for s in drop_states(instance, "r001")] == ["pending"] and publishable_release(instance) is None
        _materialize(instance, "attribute_assignments", "d1", release="r001")
        assert publishable_release(instance) == "r001"


def test_a_failed_drop_awaiting_its_automatic_retry_is_not_settled() -> None:
    """A drop's scoring run is killed and fails; until the run retry daemon launches and finishes its
    retry, the drop must neither be labelled nor left off a publish."""
    from dagster._core.test_utils import create_run_for_test

    with dg.instance_for_test() as instance:
        _d1_scored_with_r001(instance)
        instance.add_dynamic_partitions(catalog_drops.name, ["d2"])
        failed = Snapshot(before=10**9, drops=("d1", "d2"), failed={ATTRIBUTE_ASSIGNMENTS: frozenset({"d2"})})
        scoring = {PRODUCT_EMBEDDINGS, ATTRIBUTE_ASSIGNMENTS}
        killed = create_run_for_test(instance, status=dg.DagsterRunStatus.FAILURE, asset_selection=scoring,
                                     tags={"dagster/partition": "d2", "dagster/will_retry": "true"})
        assert [s.state for s in drop_states(instance, "r001", failed)] == ["scored", "pending"]
        assert publishable_release(instance, failed) is None
        assert "d2" not in drops_due_for_vlm_stage(instance, failed)
        retry = create_run_for_test(instance, status=dg.DagsterRunStatus.STARTED, asset_selection=scoring,
                                    tags={"dagster/partition": "d2", "dagster/parent_run_id": killed.run_id})
        assert [s.state for s in drop_states(instance, "r001", failed)] == ["scored", "pending"]
        instance.delete_run(retry.run_id)  # the retry failed too and will not be retried: the failure is final
        create_run_for_test(instance, status=dg.DagsterRunStatus.FAILURE, asset_selection=scoring,
                            tags={"dagster/partition": "d2", "dagster/parent_run_id": killed.run_id,
                                  "dagster/will_retry": "false"})
        assert [s.state for s in drop_states(instance, "r001", failed)] == ["scored", "failed"]
        assert publishable_release(instance, failed) == "r001" and "d2" in drops_due_for_vlm_stage(instance, failed)


def test_a_release_is_read_back_as_the_record_model_release_wrote() -> None:
    record = ReleaseRecord(key="r001", version="abc", checkpoint="/m/abc.pt", drops=("d1", "d2"), attributes=40,
                           thresholds={"colour:red": 0.3}, fused_recall_at_10=0.9)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(model_releases.name, ["r001", "r002"])
        assert release_record(instance) is None, "nothing built yet"
        instance.report_runless_asset_event(dg.AssetMaterialization("model_release", partition="r001",
                                                                    metadata=record.metadata()))
        assert release_record(instance) == replace(record, state="in_service")
        _materialize(instance, "model_release", "r002", drops=json.dumps(["d1"]), version="def")
        assert release_record(instance, "r001").state == "superseded"
        assert release_record(instance).drops == ("d1",), "a release recorded before the record kept its drops as JSON"
    assert record.to_table().row(0, named=True)["drops"] == '["d1", "d2"]'
