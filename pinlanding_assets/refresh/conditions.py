"""When each asset refreshes, declared on the asset (Dagster Declarative Automation).

The built-in conditions cover most of the graph. Three questions need the instance's data, so they
are small custom conditions, evaluated on the code server (``use_user_code_server=True``):
which release is in service, whether it may be published (every drop scored with it, or failed), and
whether a drop's VLM labelling may run now (after the drop is published, so it never delays a page).
They read the instance as the tick sees it (``releases.Snapshot``: events up to the tick's cursor, the
tick's failed and in-progress partitions), once per tick, so they agree with the built-in conditions.

| assets | partitions | condition |
|---|---|---|
| catalog_products (+ quarantine, ground truth) | drop | a new drop partition (registered by catalog_drop_sensor) |
| catalog_image_features, catalog_profile | drop | eager: the drop's catalog changed |
| raw_vlm_attributes (+ quarantine) | drop | the drop's catalog changed, once the drop is published |
| curated_vocabulary | release | a new release partition (release_sensor, `pinlanding release`, or the UI) |
| dual_encoder, attribute_embeddings, model_release | release | eager within the release |
| product_embeddings, attribute_assignments | drop | the drop's catalog changed, or a release came into service |
| query_intents (+ quarantine) | week | the week's log files changed (search_log_sensor) |
| demand_window | week | eager, latest week only |
| demand_intents, collections, feeds, baseline, comparison, pages | release | together, in one run: what they read
  changed since the release's last publish, only for the release in service, once every drop is settled for it |
"""

from __future__ import annotations

import dagster as dg

from pinlanding_assets.refresh.keys import (
    ATTRIBUTE_ASSIGNMENTS,
    ATTRIBUTE_EMBEDDINGS,
    CURATED_VOCABULARY,
    DUAL_ENCODER,
    MODEL_RELEASE,
    PRODUCT_EMBEDDINGS,
    VLM_ATTRIBUTES,
    VLM_QUARANTINE,
)
from pinlanding_assets.refresh.releases import (
    PER_DROP_PIPELINE,
    Snapshot,
    current_release,
    drops_due_for_vlm_stage,
    publish_due,
)
from pinlanding_assets.refresh.stages import stage

AC = dg.AutomationCondition
RELEASE_INPUTS = dg.AssetSelection.assets(MODEL_RELEASE, ATTRIBUTE_EMBEDDINGS, DUAL_ENCODER)


class _TickAnswers:
    """The snapshot of the tick being evaluated and the custom conditions' answers in it, computed once
    and shared by every asset the tick evaluates (Dagster builds one asset graph view per tick)."""

    def __init__(self) -> None:
        self._view = None
        self._snapshot: Snapshot | None = None
        self._answers: dict[str, object] = {}

    async def get(self, context: dg.AutomationContext, name: str, ask):
        view = context.asset_graph_view
        if view is not self._view:
            snapshot = await _snapshot(view)
            if view is not self._view:
                self._view, self._snapshot, self._answers = view, snapshot, {}
        if name not in self._answers:
            self._answers[name] = ask(view.instance, self._snapshot)
        return self._answers[name]


_TICK = _TickAnswers()


async def _snapshot(view) -> Snapshot:
    failed, busy = {}, {}
    for key in PER_DROP_PIPELINE:
        full = view.get_full_subset(key=key)
        failed[key] = frozenset((await view.compute_execution_failed_subset(key=key, from_subset=full))
                                .expensively_compute_partition_keys())
        busy[key] = frozenset((await view.compute_run_in_progress_subset(key=key, from_subset=full))
                              .expensively_compute_partition_keys())
    drops = tuple(sorted(view.get_full_subset(key=ATTRIBUTE_ASSIGNMENTS).expensively_compute_partition_keys()))
    return Snapshot(before=(view.last_event_id or 0) + 1, drops=drops, failed=failed, in_progress=busy)


class _PartitionsWhere(dg.AutomationCondition):
    """True for the candidate partitions whose keys ``keys(instance, snapshot)`` returns."""

    def keys(self, instance: dg.DagsterInstance, snapshot: Snapshot) -> set[str]:
        raise NotImplementedError

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        keys = await _TICK.get(context, self.name, self.keys)
        return dg.AutomationResult(true_subset=context.candidate_subset.compute_intersection_with_partition_keys(keys),
                                   context=context)


class PublishDue(_PartitionsWhere):
    @property
    def description(self) -> str:
        return ("this release is in service, every drop is scored with it (or failed), and what it publishes "
                "changed since its last publish")

    @property
    def name(self) -> str:
        return "publish_due"

    def keys(self, instance: dg.DagsterInstance, snapshot: Snapshot) -> set[str]:
        release = publish_due(instance, snapshot)
        return {release} if release else set()


class DropPublished(_PartitionsWhere):
    @property
    def description(self) -> str:
        return "the drop's latest assignments are on the published pages (or it failed), or no release exists yet"

    @property
    def name(self) -> str:
        return "labelling_turn"

    def keys(self, instance: dg.DagsterInstance, snapshot: Snapshot) -> set[str]:
        return drops_due_for_vlm_stage(instance, snapshot)


class ReleaseInService(dg.AutomationCondition):
    @property
    def description(self) -> str:
        return "a model release is in service"

    @property
    def name(self) -> str:
        return "release_in_service"

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        ready = await _TICK.get(context, self.name, current_release) is not None
        return dg.AutomationResult(true_subset=context.candidate_subset if ready else context.get_empty_subset(),
                                   context=context)


def _changed() -> dg.AutomationCondition:
    return (AC.newly_missing() | AC.any_deps_updated()).since_last_handled().with_label("new or upstream changed")


# Not on_missing(): it skips partitions that already exist when the automation sensor first evaluates,
# so a drop registered in that very tick (or while the daemon was off) would never be taken in.
NEW_DROP = (AC.missing() & ~AC.in_progress() & ~AC.execution_failed() & ~AC.newly_requested()).with_label("new drop")
DROP_EAGER = AC.eager()
LABELLING = (_changed() & ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
             & DropPublished()).with_label("label after publishing")
RELEASE_CUT = (AC.missing() & ~AC.in_progress() & ~AC.execution_failed() & ~AC.newly_requested()).with_label(
    "release cut")
IN_RELEASE = AC.eager().allow(dg.AssetSelection.assets(CURATED_VOCABULARY, DUAL_ENCODER, ATTRIBUTE_EMBEDDINGS))
# A release triggers re-scoring only once it is materialized (not when it is merely requested in the
# same tick): the drops' runs must not start before the release run they would otherwise overtake.
RELEASE_DONE = AC.any_deps_match(AC.newly_updated()).allow(dg.AssetSelection.assets(MODEL_RELEASE))
SCORING = ((AC.newly_missing() | AC.any_deps_updated().ignore(RELEASE_INPUTS) | RELEASE_DONE).since_last_handled()
           .with_label("new, catalog changed or a release came into service")
           & ~AC.any_deps_missing().ignore(RELEASE_INPUTS) & ~AC.any_deps_in_progress() & ~AC.in_progress()
           & ReleaseInService()).with_label("score with the release in service")
ASSIGNING = AC.eager().allow(dg.AssetSelection.assets(PRODUCT_EMBEDDINGS))
# A new week also counts while merely missing: when a reload adds week partitions, Dagster restarts the
# condition's history for the asset, and a "newly" event in that first evaluation is not seen.
NEW_OR_MISSING = (AC.missing() & ~AC.execution_failed() & ~AC.newly_requested()).with_label("missing, never tried")
SEARCH_WEEK = ((_changed() | NEW_OR_MISSING) & ~AC.in_progress()).with_label("week's log changed")
WINDOW = AC.eager()
# One answer per tick for every publish asset (computed once, from the tick's snapshot), so the whole
# publish (demand, collections, feeds, baseline, comparison, pages) is requested together: one run,
# never pages built ahead of the feeds they show. New VLM labels feed the next release, not this one.
PUBLISH = (PublishDue() & ~AC.in_progress()).with_label("publish the release in service")

# Two lanes (README: Operations): the instance runs one serving and one learning run at a time
# (dagster.yaml), so a new drop is never queued behind labelling or a release build.
LANE_TAG = "pinlanding/lane"
LEARNING = dg.AssetSelection.assets(*stage("release").assets, VLM_ATTRIBUTES, VLM_QUARANTINE)
SERVING = dg.AssetSelection.all() - LEARNING


def _lane(name: str, target: dg.AssetSelection, what: str) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        f"{name}_automation",
        target=target,
        run_tags={LANE_TAG: name},
        use_user_code_server=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=15,
        description=f"Evaluates the automation conditions of the {name} lane ({what}); its runs are tagged "
                    f"{LANE_TAG}={name}. Some conditions read the instance: hence the code server.",
    )


serving_automation = _lane("serving", SERVING, "a drop's intake and scoring, demand, the publish")
learning_automation = _lane("learning", LEARNING, "VLM labelling, a release's vocabulary, encoder and embeddings")
