"""mgr.train: data, model, fitting and evaluation for micro-gesture recognition."""
