"""The PinLanding code location: assets grouped by domain, checks, sensors, jobs for the CLI, resources."""

import dagster as dg

from pinlanding_assets.attributes import assets as attribute_assets
from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.catalog import checks as catalog_checks
from pinlanding_assets.collections import assets as collection_assets
from pinlanding_assets.demand import assets as demand_assets
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.encoder import assets as encoder_assets
from pinlanding_assets.refresh.conditions import learning_automation, serving_automation
from pinlanding_assets.refresh.jobs import jobs_for
from pinlanding_assets.refresh.sensors import catalog_drop_sensor, overrides_sensor, release_sensor, search_log_sensor
from pinlanding_assets.settings import export_library_environment
from pinlanding_assets.site import assets as site_assets

export_library_environment()

ASSET_MODULES = [catalog_assets, attribute_assets, encoder_assets, demand_assets, collection_assets, site_assets]
all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules([catalog_checks, *ASSET_MODULES])
all_jobs = jobs_for([a for a in all_assets if isinstance(a, dg.AssetsDefinition)])

defs = dg.Definitions(
    assets=[*all_assets, demand_assets.search_log, collection_assets.merchandising_overrides],
    asset_checks=all_checks,
    jobs=all_jobs,
    sensors=[catalog_drop_sensor, search_log_sensor, overrides_sensor, release_sensor, serving_automation, learning_automation],
    resources=resources_for(),
    # One process per run: Ray starts once per run, not once per step.
    executor=dg.in_process_executor,
)
