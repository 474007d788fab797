"""A hardware build loaded for simulation, its reference (the Brevitas model's top-1 on the test images) and the
memory a batch may take."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from hw_build.build_folder import BuildFolder


class SimError(UserError):
    """Bad input to a simulation (no build, wrong dataset, missing simulator); names the fix."""


@dataclass
class Build:
    """What a hardware build left in its folder, loaded for simulation."""
    folder: BuildFolder
    state: dict
    child: object
    parent: object
    estimates: dict

    @classmethod
    def load(cls, build_dir: Path) -> "Build":
        folder = BuildFolder(build_dir)
        state = folder.read_state()
        if state is None:
            raise SimError(f"{folder.root} holds no hardware build (no build_state.json). Run "
                           f"'make build MODEL=... BOARD=...' or 'python -m hw_build' first")
        if "hw_codegen" not in state.get("done", []):
            raise SimError(f"the build in {folder.root} stopped before hw_codegen ({state.get('done', [])[-1:]}); "
                           f"run it again to completion")
        if not folder.checkpoint_unchanged(state):
            raise SimError(f"the checkpoint of the build in {folder.root} ({folder.own_checkpoint(state)}) is "
                           f"missing or changed since the build; build again")
        from hw_build import finn_env
        finn_env.setup(folder.finn_tmp)
        return cls(folder, state, folder.load_model(folder.last_stage("hw_codegen"), state),
                   folder.load_model(folder.parent_model, state), folder.estimates())


def reference_and_images(build: Build, n: int, data_dir: str = ""):
    """Test images, labels and the Brevitas model's top-1 for the build's checkpoint."""
    from training.checkpoint import load, predict
    from training.data import DATASETS, make_splits
    model, cfg, _ = load(build.folder.own_checkpoint(build.state))
    s = make_splits(cfg.dataset, data_dir or cfg.data_dir, train_limit=1, test_limit=max(n, 0))
    expected = build.parent.get_tensor_shape(build.parent.graph.input[0].name)
    chw = DATASETS[cfg.dataset].chw
    if tuple(expected[1:]) not in (chw, chw[1:] + (chw[0],)):
        raise SimError(f"the build takes {expected}, which is not {cfg.dataset}")
    return s.x_test.numpy(), s.y_test.numpy(), predict(model, s.x_test).argmax(1).numpy(), cfg


def check_images_fit(build: Build, images: np.ndarray) -> None:
    shape = tuple(build.parent.get_tensor_shape(build.parent.graph.input[0].name))
    c, h, w = images.shape[1:]
    if (1, c, h, w) != shape and (1, h, w, c) != shape:
        raise SimError(f"images of shape {images.shape[1:]} do not fit the accelerator's input {shape[1:]} "
                       f"(a dataset of another model?)")


# --- python and finn modes ------------------------------------------------------------------------


def resolve_batch_size(build: Build, mode: str, batch_size: int | None) -> int:
    """The batch the python kernels run (1 for finn mode): the one given, checked against the memory available
    now before any work, or sized to BATCH_MEMORY."""
    if mode == "finn":
        return 1
    if batch_size is not None and batch_size < 1:
        raise SimError(f"--batch-size must be at least 1, got {batch_size}")
    from graph.batched import BatchedGraph
    from graph.execute import default_batch_size
    graph = BatchedGraph(build.child)
    if batch_size is None:
        return default_batch_size(graph)
    need, avail = graph.peak_bytes_per_image() * batch_size, available_memory()
    if avail and need > 0.8 * avail:
        raise SimError(f"--batch-size {batch_size} needs about {need / 2**30:.1f} GiB for this accelerator's largest "
                       f"layer tensors, more than the {avail / 2**30:.1f} GiB available; use --batch-size "
                       f"{max(1, int(0.8 * avail * batch_size / need))} or less (or leave it out: sized automatically)")
    return batch_size


def available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
