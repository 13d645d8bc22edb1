"""When each asset refreshes, declared on the asset (Dagster Declarative Automation).

The built-in conditions cover most of the graph. Three questions need the instance's data, so they
are small custom conditions, evaluated on the code server (``use_user_code_server=True``):
which release is in service, whether it may be published (every drop scored with it, or failed), and
whether a drop's VLM labelling may run now (after the drop is published, so it never delays a page).

| assets | partitions | condition |
|---|---|---|
| catalog_products (+ quarantine, labels) | drop | a new drop partition (registered by catalog_drop_sensor) |
| catalog_image_features, catalog_profile | drop | eager: the drop's catalog changed |
| raw_vlm_attributes (+ quarantine) | drop | the drop's catalog changed, once the drop is published |
| curated_vocabulary | release | a new release partition (release_sensor, `pinlanding release`, or the UI) |
| dual_encoder, attribute_embeddings, model_release | release | eager within the release |
| product_embeddings, attribute_assignments | drop | the drop's catalog changed, or a release came into service |
| query_intents (+ quarantine) | week | the week's log files changed (search_log_sensor) |
| demand_window | week | eager, latest week only |
| demand_intents, collections, feeds, baseline, comparison, pages | release | anything upstream changed, only for
  the release in service and once every drop is settled for it |
"""

from __future__ import annotations

import dagster as dg

from pinlanding_assets.releases import current_release, drops_due_for_labels, publishable_release
from pinlanding_assets.stages import STAGES

AC = dg.AutomationCondition
# Every per-drop asset (from the stages, written once): release and publish assets read all drops.
DROP_ASSETS = dg.AssetSelection.assets(*(a for s in STAGES if s.partitions == "drops" for a in s.assets))
RELEASE_INPUTS = dg.AssetSelection.assets("model_release", "attribute_embeddings", "dual_encoder")


class _PartitionsWhere(dg.AutomationCondition):
    """True for the candidate partitions whose keys ``keys(instance)`` returns."""

    def keys(self, instance: dg.DagsterInstance) -> set[str]:
        raise NotImplementedError

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        keys = self.keys(context.asset_graph_view.instance)
        return dg.AutomationResult(true_subset=context.candidate_subset.compute_intersection_with_partition_keys(keys),
                                   context=context)


class ReleaseReadyToPublish(_PartitionsWhere):
    @property
    def description(self) -> str:
        return "this release is in service and every drop is scored with it (or failed)"

    @property
    def name(self) -> str:
        return "release_ready_to_publish"

    def keys(self, instance: dg.DagsterInstance) -> set[str]:
        release = publishable_release(instance)
        return {release} if release else set()


class DropPublished(_PartitionsWhere):
    @property
    def description(self) -> str:
        return "the drop is on the published pages (or failed), or no release exists yet"

    @property
    def name(self) -> str:
        return "labelling_turn"

    def keys(self, instance: dg.DagsterInstance) -> set[str]:
        return drops_due_for_labels(instance)


class ReleaseInService(dg.AutomationCondition):
    @property
    def description(self) -> str:
        return "a model release is in service"

    @property
    def name(self) -> str:
        return "release_in_service"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        ready = current_release(context.asset_graph_view.instance) is not None
        return dg.AutomationResult(true_subset=context.candidate_subset if ready else context.get_empty_subset(),
                                   context=context)


def _changed(ignore: dg.AssetSelection | None = None) -> dg.AutomationCondition:
    updated = AC.any_deps_updated() if ignore is None else AC.any_deps_updated().ignore(ignore)
    return (AC.newly_missing() | updated).since_last_handled().with_label("new or upstream changed")


# Not on_missing(): it skips partitions that already exist when the automation sensor first evaluates,
# so a drop registered in that very tick (or while the daemon was off) would never be taken in.
NEW_DROP = (AC.missing() & ~AC.in_progress() & ~AC.execution_failed() & ~AC.newly_requested()).with_label("new drop")
DROP_EAGER = AC.eager()
LABELLING = (_changed() & ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
             & DropPublished()).with_label("label after publishing")
RELEASE_CUT = (AC.missing() & ~AC.in_progress() & ~AC.execution_failed() & ~AC.newly_requested()).with_label(
    "release cut")
IN_RELEASE = AC.eager().allow(dg.AssetSelection.assets("curated_vocabulary", "dual_encoder", "attribute_embeddings"))
# A release triggers re-scoring only once it is materialized (not when it is merely requested in the
# same tick): the drops' runs must not start before the release run they would otherwise overtake.
RELEASE_DONE = AC.any_deps_match(AC.newly_updated()).allow(dg.AssetSelection.assets("model_release"))
SCORING = ((AC.newly_missing() | AC.any_deps_updated().ignore(RELEASE_INPUTS) | RELEASE_DONE).since_last_handled()
           .with_label("new, catalog changed or a release came into service")
           & ~AC.any_deps_missing().ignore(RELEASE_INPUTS) & ~AC.any_deps_in_progress() & ~AC.in_progress()
           & ReleaseInService()).with_label("score with the release in service")
ASSIGNING = AC.eager().allow(dg.AssetSelection.assets("product_embeddings"))
# A new week also counts while merely missing: when a reload adds week partitions, Dagster restarts the
# condition's history for the asset, and a "newly" event in that first evaluation is not seen.
NEW_OR_MISSING = (AC.missing() & ~AC.execution_failed() & ~AC.newly_requested()).with_label("missing, never tried")
SEARCH_WEEK = ((_changed() | NEW_OR_MISSING) & ~AC.in_progress()).with_label("week's log changed")
WINDOW = AC.eager()
# New VLM labels feed the next release, not this one: they never re-publish the release in service.
PUBLISH = (_changed(ignore=dg.AssetSelection.assets("raw_vlm_attributes"))
           & ~AC.any_deps_missing().ignore(DROP_ASSETS) & ~AC.any_deps_in_progress()
           & ~AC.any_deps_match(AC.will_be_requested()).allow(DROP_ASSETS) & ~AC.in_progress()
           & ReleaseReadyToPublish()).with_label("publish the release in service")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "pinlanding_automation",
    target=dg.AssetSelection.all(),
    use_user_code_server=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Evaluates every asset's automation condition (some read the instance: hence the code server).",
)
