"""Model releases, read off the Dagster instance: which release is in service, how far every drop is
scored with it, whether it may be published, and whether a new release is due.

A release (``r001``, ``r002``, ...) is in service once its ``model_release`` partition is materialized
(vocabulary, dual encoder and attribute embeddings all built). A failed training never materializes
it, so the previous release stays in service. Publishing a release waits until every drop is
settled for it: scored with it, or failed (its intake or scoring) with no automatic retry of it
pending, which then leaves it out.

Automation conditions read these through a ``Snapshot`` of their tick, never the live instance: a
materialization landing while a tick is evaluated must be seen by every condition of that tick or by
none (a publish asset once saw a drop scored that its upstream feeds still saw in progress, and
published pages without it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

from pinlanding_assets.partitions import catalog_drops, model_releases, next_release_key, release_order
from pinlanding_assets.refresh.keys import (
    ATTRIBUTE_ASSIGNMENTS,
    CATALOG_GROUND_TRUTH,
    CATALOG_IMAGE_FEATURES,
    CATALOG_PRODUCTS,
    CURATED_VOCABULARY,
    DEMAND_WINDOW,
    DUAL_ENCODER,
    LANDING_PAGES,
    MERCHANDISING_OVERRIDES,
    MODEL_RELEASE,
    PRODUCT_EMBEDDINGS,
    VLM_ATTRIBUTES,
)

# set by Dagster on a failed run: whether the run retry daemon will launch a retry of it
WILL_RETRY_TAG = "dagster/will_retry"
PER_DROP_PIPELINE = [CATALOG_PRODUCTS, CATALOG_IMAGE_FEATURES, PRODUCT_EMBEDDINGS, ATTRIBUTE_ASSIGNMENTS]


@dataclass(frozen=True)
class Snapshot:
    """The instance as one automation tick sees it: events stored before ``before`` (a storage id), the
    drops registered then, and the tick's own failed and in-progress partitions of the per-drop assets."""
    before: int
    drops: tuple[str, ...]
    failed: Mapping[dg.AssetKey, frozenset[str]] = field(default_factory=dict)
    in_progress: Mapping[dg.AssetKey, frozenset[str]] = field(default_factory=dict)


def _has_status(statuses: dict, partition: str, status: str) -> bool:
    """Whether ``get_status_by_partition``'s answer gives ``partition`` that status."""
    found = statuses.get(partition)
    return found is not None and found.value == status


def _drops(instance: dg.DagsterInstance, snapshot: Snapshot | None) -> list[str]:
    return list(snapshot.drops) if snapshot else sorted(instance.get_dynamic_partitions(catalog_drops.name))


def _drops_in(instance: dg.DagsterInstance, key: dg.AssetKey, drops: list[str], status: str,
              snapshot: Snapshot | None) -> set[str]:
    """The drops among ``drops`` whose ``key`` partition is FAILED or IN_PROGRESS."""
    if snapshot is not None:
        return set(drops) & set((snapshot.failed if status == "FAILED" else snapshot.in_progress).get(key, ()))
    if not drops:
        return set()
    statuses = instance.get_status_by_partition(key, drops, catalog_drops) or {}
    return {d for d in drops if _has_status(statuses, d, status)}


def _failed_drops(instance: dg.DagsterInstance, keys: list[dg.AssetKey], drops: list[str],
                  snapshot: Snapshot | None) -> set[str]:
    """The drops whose ``keys`` partitions failed for good: the run retry daemon will not retry the
    drop's latest failed run, or its retry finished. Between a killed run and the launch of its retry
    the drop is failed in the instance, yet nothing may treat it as settled (publish without it, label it)."""
    final = set()
    for drop in set().union(*(_drops_in(instance, key, drops, "FAILED", snapshot) for key in keys)):
        runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": drop},
                                                      statuses=[dg.DagsterRunStatus.FAILURE]), limit=20)
        run = next((r.dagster_run for r in runs if r.dagster_run.asset_selection is None
                    or r.dagster_run.asset_selection & set(PER_DROP_PIPELINE)), None)
        if run is None or run.tags.get(WILL_RETRY_TAG) != "true":
            final.add(drop)
            continue
        retries = instance.get_run_records(dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id}), limit=1)
        if retries and retries[0].dagster_run.is_finished:
            final.add(drop)
    return final


def latest_record(instance: dg.DagsterInstance, key: dg.AssetKey | str, partition: str | None = None,
                  snapshot: Snapshot | None = None):
    """The newest materialization record of ``key`` (of one partition, if given; before the snapshot, if
    given), or None: the one way the project asks the instance for a latest materialization."""
    filters = dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_coercible(key),
                                    asset_partitions=[partition] if partition else None,
                                    before_storage_id=snapshot.before if snapshot else None)
    records = instance.fetch_materializations(filters, limit=1).records
    return records[0] if records else None


def releases_in_service(instance: dg.DagsterInstance, snapshot: Snapshot | None = None) -> list[str]:
    """Releases whose model_release is materialized, oldest first."""
    done = instance.get_materialized_partitions(MODEL_RELEASE, before_cursor=snapshot.before if snapshot else None)
    return sorted(done, key=release_order)


def current_release(instance: dg.DagsterInstance, snapshot: Snapshot | None = None) -> str | None:
    done = releases_in_service(instance, snapshot)
    return done[-1] if done else None


@dataclass(frozen=True)
class ReleaseRecord:
    """A built release as ``model_release`` records it: its encoder (version, checkpoint, calibrated
    thresholds, holdout Recall@10), the drops its vocabulary and encoder learned from, and the size of
    its vocabulary. ``state`` is set by ``release_record``: in_service (the newest built) or superseded."""

    key: str
    version: str
    checkpoint: str
    drops: tuple[str, ...]
    attributes: int
    thresholds: Mapping[str, float]
    fused_recall_at_10: float
    state: str = "built"

    def to_table(self) -> pl.DataFrame:
        return pl.DataFrame([{"release": self.key, "version": self.version, "checkpoint": self.checkpoint,
                              "drops": json.dumps(list(self.drops)), "attributes": self.attributes}])

    def metadata(self) -> dict[str, dg.RawMetadataValue]:
        return {"release": self.key, "version": self.version, "checkpoint": dg.MetadataValue.path(self.checkpoint),
                "drops": dg.MetadataValue.json(list(self.drops)), "attributes": self.attributes,
                "thresholds": dg.MetadataValue.json(dict(self.thresholds)),
                "fused_recall_at_10": self.fused_recall_at_10}

    @classmethod
    def from_metadata(cls, key: str, metadata: Mapping[str, dg.MetadataValue], state: str) -> ReleaseRecord:
        value = {name: entry.value for name, entry in metadata.items()}
        drops = value.get("drops", [])
        # releases recorded before this record stored their drops as a JSON string and no thresholds
        drops = json.loads(drops) if isinstance(drops, str) else drops
        return cls(key=key, version=str(value.get("version", "")), checkpoint=str(value.get("checkpoint", "")),
                   drops=tuple(drops), attributes=int(value.get("attributes", 0)),
                   thresholds=value.get("thresholds", {}), fused_recall_at_10=float(value.get("fused_recall_at_10", 0.0)),
                   state=state)


def release_record(instance: dg.DagsterInstance, release: str | None = None,
                   snapshot: Snapshot | None = None) -> ReleaseRecord | None:
    """The record of ``release`` (default: the release in service), or None if it is not built."""
    current = current_release(instance, snapshot)
    release = release or current
    record = latest_record(instance, MODEL_RELEASE, release, snapshot) if release else None
    if record is None:
        return None
    state = "in_service" if release == current else "superseded"
    return ReleaseRecord.from_metadata(release, record.asset_materialization.metadata, state)


@dataclass(frozen=True)
class DropState:
    drop: str
    state: str  # scored | failed | stale | pending
    release: str | None  # the release its assignments were made with
    assignments_id: int | None = None  # the storage id of its latest assignments

    @property
    def settled(self) -> bool:
        return self.state in {"scored", "failed"}


def drop_states(instance: dg.DagsterInstance, release: str, snapshot: Snapshot | None = None) -> list[DropState]:
    """Every registered drop's standing for ``release``."""
    drops = _drops(instance, snapshot)
    failed_drops = _failed_drops(instance, PER_DROP_PIPELINE, drops, snapshot)
    busy_drops = set().union(*(_drops_in(instance, k, drops, "IN_PROGRESS", snapshot) for k in PER_DROP_PIPELINE))
    states = []
    for drop in drops:
        record = latest_record(instance, ATTRIBUTE_ASSIGNMENTS, drop, snapshot)
        scored_with = None
        if record is not None:
            value = record.asset_materialization.metadata.get("release")
            scored_with = value.value if value is not None else None
        failed, in_progress = drop in failed_drops, drop in busy_drops
        # embeddings newer than the scores: the re-scoring that follows them has not been requested yet
        embedded = latest_record(instance, PRODUCT_EMBEDDINGS, drop, snapshot) if record is not None else None
        outdated = embedded is not None and embedded.storage_id > record.storage_id
        if scored_with == release and not in_progress and not outdated:
            state = "scored"
        elif failed and not in_progress:
            state = "failed"
        elif scored_with is not None and not in_progress and not outdated:
            state = "stale"
        else:
            state = "pending"
        states.append(DropState(drop, state, scored_with, record.storage_id if record is not None else None))
    return states


def publishable_release(instance: dg.DagsterInstance, snapshot: Snapshot | None = None) -> str | None:
    """The release in service, once every drop is settled for it and at least one is scored with it."""
    release = current_release(instance, snapshot)
    if release is None:
        return None
    states = drop_states(instance, release, snapshot)
    if states and all(s.settled for s in states) and any(s.state == "scored" for s in states):
        return release
    return None


def scored_versions(instance: dg.DagsterInstance, release: str) -> dict[str, int]:
    """Drop -> the storage id of its assignments scored with ``release``: what a publish of it shows.
    Recorded on landing_pages, so "the drop is on the pages" is read from what they were built from."""
    return {s.drop: s.assignments_id for s in drop_states(instance, release) if s.state == "scored"}


def drops_on_pages(instance: dg.DagsterInstance, snapshot: Snapshot | None = None) -> dict[str, int]:
    """Drop -> the storage id of the assignments the latest published pages show."""
    pages = latest_record(instance, LANDING_PAGES, snapshot=snapshot)
    value = pages.asset_materialization.metadata.get("drops_on_pages") if pages is not None else None
    return {drop: int(storage_id) for drop, storage_id in (value.value if value is not None else {}).items()}


def drops_due_for_vlm_stage(instance: dg.DagsterInstance, snapshot: Snapshot | None = None) -> set[str]:
    """Drops whose VLM stage may run now: all of them before the first release (it needs labels), then
    each drop once its latest assignments are on the published pages (or its scoring failed), so
    labelling never delays a page."""
    drops = _drops(instance, snapshot)
    if current_release(instance, snapshot) is None:
        return set(drops)
    shown = drops_on_pages(instance, snapshot)
    failed = _failed_drops(instance, [ATTRIBUTE_ASSIGNMENTS], drops, snapshot)
    due = set()
    for drop in drops:
        scored = latest_record(instance, ATTRIBUTE_ASSIGNMENTS, drop, snapshot)
        if drop in failed or (scored is not None and shown.get(drop, -1) >= scored.storage_id):
            due.add(drop)
    return due


# What a publish reads besides the release's own tables (VLM labels feed the next release, not this one).
PUBLISH_INPUTS = [CATALOG_PRODUCTS, CATALOG_GROUND_TRUTH, PRODUCT_EMBEDDINGS, ATTRIBUTE_ASSIGNMENTS, DEMAND_WINDOW,
                  MERCHANDISING_OVERRIDES]


def last_publish_attempt(instance: dg.DagsterInstance, release: str, snapshot: Snapshot | None = None) -> float:
    """When ``release`` was last published or a run to publish it (build its landing_pages) was created,
    whatever became of that run: a publish that failed is not retried until something it reads changes."""
    pages = latest_record(instance, LANDING_PAGES, release, snapshot)
    attempted = pages.timestamp if pages is not None else 0.0
    for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": release}), limit=200):
        if LANDING_PAGES in (record.dagster_run.asset_selection or ()):
            return max(attempted, record.create_timestamp.timestamp())
    return attempted


def publish_due(instance: dg.DagsterInstance, snapshot: Snapshot | None = None) -> str | None:
    """The release to publish now, if any: it is publishable (every drop settled for it) and something it
    reads changed after its last publish started. One answer per tick for every publish asset, so they
    are requested together, in one run, never pages before the feeds they show."""
    release = publishable_release(instance, snapshot)
    if release is None:
        return None
    attempted = last_publish_attempt(instance, release, snapshot)
    inputs = [latest_record(instance, key, snapshot=snapshot) for key in PUBLISH_INPUTS]
    inputs.append(latest_record(instance, MODEL_RELEASE, release, snapshot))
    newest = max((record.timestamp for record in inputs if record is not None), default=0.0)
    return release if newest > attempted else None


@dataclass(frozen=True)
class ReleaseDecision:
    due: bool
    reason: str
    new_labelled: int
    labelled_in_release: int


def labelled_products(instance: dg.DagsterInstance) -> dict[str, int]:
    """Drop -> products the VLM stage labelled (from the latest raw_vlm_attributes materialization)."""
    out = {}
    for drop in instance.get_materialized_partitions(VLM_ATTRIBUTES):
        record = latest_record(instance, VLM_ATTRIBUTES, drop)
        value = record.asset_materialization.metadata.get("labelled_products") if record else None
        out[drop] = int(value.value) if value is not None else 0
    return out


def release_due(instance: dg.DagsterInstance, new_label_share: float, max_age_days: float,
                now: float | None = None) -> ReleaseDecision:
    """Cut a release when labelled products not yet seen by the current release reach ``new_label_share``
    of those it was trained on, or when the current release is older than ``max_age_days`` and anything
    is new. Never while a release is still being built."""
    labelled = labelled_products(instance)
    keys = instance.get_dynamic_partitions(model_releases.name)
    in_service = set(releases_in_service(instance))
    building = [k for k in keys if k not in in_service and not _release_failed(instance, k)]
    if building:
        return ReleaseDecision(False, f"release {building[-1]} is still being built", 0, 0)
    record = release_record(instance)
    release = record.key if record else None
    seen = set(record.drops) if record else set()
    new = sum(n for drop, n in labelled.items() if drop not in seen)
    old = sum(n for drop, n in labelled.items() if drop in seen)
    if new == 0:
        return ReleaseDecision(False, "no labelled products new to the current release", new, old)
    if release is None:
        waiting = _awaiting_vlm_attributes(instance, labelled)
        if waiting:
            return ReleaseDecision(False, f"the first release waits for the labels of {', '.join(waiting)}", new, old)
        return ReleaseDecision(True, f"first release: {new} labelled products", new, old)
    share = new / max(old, 1)
    if share >= new_label_share:
        return ReleaseDecision(True, f"{new} new labelled products = {share:.0%} of {old} (>= {new_label_share:.0%})",
                               new, old)
    built = latest_record(instance, MODEL_RELEASE, release)
    age_days = ((now or time.time()) - built.timestamp) / 86400 if built else 0.0
    if age_days >= max_age_days:
        return ReleaseDecision(True, f"release {release} is {age_days:.1f} days old and {new} labelled products are new",
                               new, old)
    return ReleaseDecision(False, f"{new} new labelled products = {share:.0%} of {old} (< {new_label_share:.0%})",
                           new, old)


def _awaiting_vlm_attributes(instance: dg.DagsterInstance, labelled: dict[str, int]) -> list[str]:
    """Registered drops with no labels yet whose intake has not failed (it may still bring labels)."""
    drops = [d for d in instance.get_dynamic_partitions(catalog_drops.name) if d not in labelled]
    if not drops:
        return []
    keys = [CATALOG_PRODUCTS, CATALOG_IMAGE_FEATURES, VLM_ATTRIBUTES]
    statuses = [instance.get_status_by_partition(key, drops, catalog_drops) or {} for key in keys]
    return [d for d in drops if not any(_has_status(s, d, "FAILED") for s in statuses)]


def _release_failed(instance: dg.DagsterInstance, release: str) -> bool:
    status = instance.get_status_by_partition(DUAL_ENCODER, [release], model_releases) or {}
    vocabulary = instance.get_status_by_partition(CURATED_VOCABULARY, [release], model_releases) or {}
    return any(_has_status(s, release, "FAILED") for s in (status, vocabulary))


class ReleaseError(RuntimeError):
    """A release cannot be cut or built (the message says why and what to run first)."""


def require_vlm_attributes(instance: dg.DagsterInstance) -> None:
    """A release learns from the VLM stage's labels: refuse to cut one before any drop has them, rather
    than register a release that can never be built."""
    if not any(labelled_products(instance).values()):
        raise ReleaseError("no drop has VLM attributes yet, so a release has nothing to learn from: run "
                           "`pinlanding run` first (it labels every drop and cuts the first release)")


def withdraw_release(instance: dg.DagsterInstance, release: str) -> None:
    """Unregister a release that failed to build, so the next cut reuses its key and no dead release is
    left waiting to be built."""
    instance.delete_dynamic_partition(model_releases.name, release)


def cut_release(instance: dg.DagsterInstance) -> str:
    """Register the next release key; automation (or the CLI) builds it."""
    key = next_release_key(instance.get_dynamic_partitions(model_releases.name))
    instance.add_dynamic_partitions(model_releases.name, [key])
    return key
