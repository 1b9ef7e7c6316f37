"""mgr.engines: export trained models and run them through one backend interface."""
