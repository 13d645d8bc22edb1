"""The refresh machinery: when each asset refreshes (conditions), which model release is in service and
may be published (releases), what starts a refresh (sensors), and the stage order the CLI and its jobs
follow (stages, jobs)."""
