"""The PinLanding code location: assets grouped by domain, checks, sensors, jobs for the CLI, resources.
The settings are read here, once, when the code location loads, and handed on: to the resources, and
to the demand assets and the search-log sensor, whose week partitions and window they shape."""

import dagster as dg

from pinlanding_assets.attributes import assets as attribute_assets
from pinlanding_assets.catalog import assets as catalog_assets
from pinlanding_assets.catalog import checks as catalog_checks
from pinlanding_assets.collections import assets as collection_assets
from pinlanding_assets.demand.assets import demand_assets
from pinlanding_assets.deployment import resources_for
from pinlanding_assets.encoder import assets as encoder_assets
from pinlanding_assets.partitions import search_weeks_for
from pinlanding_assets.refresh.conditions import learning_automation, serving_automation
from pinlanding_assets.refresh.jobs import jobs_for
from pinlanding_assets.refresh.sensors import catalog_drop_sensor, overrides_sensor, release_sensor, search_log_sensor
from pinlanding_assets.settings import export_library_environment, load_settings
from pinlanding_assets.site import assets as site_assets

settings = load_settings()
export_library_environment()

# A week file past the last known week needs a reload of the code location (a live log, open-ended, does not).
weeks = search_weeks_for(settings.paths.search_log_dir)
ASSET_MODULES = [catalog_assets, attribute_assets, encoder_assets, collection_assets, site_assets]
all_assets = [*dg.load_assets_from_modules(ASSET_MODULES), *demand_assets(weeks, settings.refresh.demand_weeks)]
all_checks = dg.load_asset_checks_from_modules([catalog_checks, *ASSET_MODULES])
all_jobs = jobs_for([a for a in all_assets if isinstance(a, dg.AssetsDefinition)])

defs = dg.Definitions(
    assets=[*all_assets, collection_assets.merchandising_overrides],
    asset_checks=all_checks,
    jobs=all_jobs,
    sensors=[catalog_drop_sensor, search_log_sensor(weeks), overrides_sensor, release_sensor, serving_automation,
             learning_automation],
    resources=resources_for(settings),
    # One process per run: Ray starts once per run, not once per step.
    executor=dg.in_process_executor,
)
