"""Tooling beside the paper path: what the papers do not contain (darknet txt labels, dataset checks and the VOC
download, result files, plots, ...). It imports the core (the top-level files); the core never imports it. Run its
scripts from the repository root, e.g. `python -m tools.datasets --check DIR`."""
