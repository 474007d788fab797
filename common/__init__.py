"""The project's shared kernel, imported by every stage of the flow (training, hw_build, sim, sweep):
the error contract (errors.py), the torch shim (compat.py), the one atomic writer (files.py), the
repository's paths (paths.py), the networks and datasets (registry.py) and the folder lock
(folder_lock.py). driver/ keeps its own mirror of the error contract: it runs alone on the board."""
