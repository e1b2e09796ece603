"""oscarvt's Buildbot master configuration: settings (YAML), change sources, schedulers, builders, web UI, mail."""
