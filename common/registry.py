"""The networks and datasets this project knows: one table each. A network's dataset, input shape and
layer count all derive from its row here, so adding a network touches this file only (plus a preset in
configs/ to train it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple  # as stored: (H, W) for MNIST, (H, W, C) for CIFAR-10
    chw: tuple          # what the model takes
    n_train: int
    n_test: int
    val_size: int       # the study's validation split
    classes: tuple


DATASETS = {
    "mnist": DatasetSpec("mnist", (28, 28), (1, 28, 28), 60000, 10000, 10000, tuple(str(i) for i in range(10))),
    "cifar10": DatasetSpec("cifar10", (32, 32, 3), (3, 32, 32), 50000, 10000, 5000,
                           ("airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck")),
}


@dataclass(frozen=True)
class Layer:
    kind: str          # "conv" or "fc"
    out: int
    k: int = 0
    pad: int = 0
    pool: bool = False  # 2x2 max-pool after this layer


def conv(out, k, pad=0, pool=False):
    return Layer("conv", out, k, pad, pool)


def fc(out):
    return Layer("fc", out)


@dataclass(frozen=True)
class Network:
    name: str
    dataset: str
    layers: tuple

    @property
    def input_chw(self) -> tuple:
        return DATASETS[self.dataset].chw

    @property
    def n_weight_layers(self) -> int:
        return len(self.layers)

    @property
    def classes(self) -> int:
        return self.layers[-1].out


NETWORKS = {
    "lenet5": Network("lenet5", "mnist", (conv(32, 5, pad=2, pool=True), conv(64, 5, pool=True), fc(512), fc(10))),
    "vggnet7": Network("vggnet7", "cifar10", (
        conv(128, 3), conv(128, 3, 1, pool=True), conv(256, 3, 1), conv(256, 3, 1, pool=True),
        conv(512, 3, 1), conv(512, 3, 1, pool=True), fc(1024), fc(1024), fc(10))),
}
