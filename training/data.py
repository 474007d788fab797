"""Datasets: MNIST and CIFAR-10 as uint8 arrays in the layout of ../shared/datasets.

One file per dataset, ``<name>.npz`` with x_train, y_train, x_test, y_test in the canonical
order of the original release. Models take uint8 pixels NCHW (as float); normalisation lives
inside the model, so the accelerator takes the same raw pixels.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.errors import UserError
from common.files import atomic_path
from common.paths import DATA, OFFLINE_DATASETS
from common.registry import DATASETS, DatasetSpec  # noqa: F401  (DatasetSpec: the type of DATASETS entries)

ENV_DATA_DIR = "BNN_DATA_DIR"


class DataError(UserError):
    """Missing or malformed dataset; the message names the file and the fix."""


def data_dir(configured: str = "") -> Path:
    """--data-dir, else $BNN_DATA_DIR, else the offline copies beside the checkout, else ./data ('make data').
    The Makefile exports the same choice, so 'make train' and 'python -m training' find the same files."""
    if configured or os.environ.get(ENV_DATA_DIR):
        return Path(configured or os.environ[ENV_DATA_DIR])
    return OFFLINE_DATASETS if any(OFFLINE_DATASETS.glob("*.npz")) else DATA


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_arrays(name: str, directory: str | Path = "") -> dict:
    """Loads and checks ``<dir>/<name>.npz``: keys, shapes, dtypes, counts, label range."""
    spec = _spec(name)
    path = data_dir(str(directory)) / f"{name}.npz"
    if not path.is_file():
        raise DataError(f"{path} not found. Run 'make data' (downloads through torchvision) or point "
                        f"--data-dir / ${ENV_DATA_DIR} at a folder with {name}.npz "
                        f"(e.g. ../shared/datasets)")
    try:
        with np.load(path) as d:
            arrays = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in d.files}
    except Exception as e:  # zipfile/pickle/ValueError: all mean the file is damaged
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); it is corrupt or not an .npz; "
                        f"delete it and run 'make data' again") from None
    fix = (f"it is not the project's {name}.npz; delete it and run 'make data', or point --data-dir / "
           f"${ENV_DATA_DIR} at the folder with the right one (e.g. ../shared/datasets)")
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise DataError(f"{path} lacks array(s) {', '.join(sorted(missing))}: {fix}")
    for split, n in (("train", spec.n_train), ("test", spec.n_test)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape != (n, *spec.image_shape) or x.dtype != np.uint8:
            other = next((k for k, v in DATASETS.items() if k != name and tuple(x.shape[1:]) == v.image_shape), None)
            raise DataError(f"{path}: x_{split} is {x.dtype}{list(x.shape)}, expected uint8{[n, *spec.image_shape]}"
                            + (f" (the shape of {other}: a copy of {other}.npz?)" if other else "") + f"; {fix}")
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{path}: y_{split} is {y.dtype}{list(y.shape)}, expected {n} integer labels; {fix}")
        if y.min() < 0 or y.max() >= len(spec.classes):
            raise DataError(f"{path}: y_{split} has labels {int(y.min())}..{int(y.max())}, outside "
                            f"0..{len(spec.classes) - 1}; {fix}")
    return arrays


def to_nchw(name: str, x: np.ndarray) -> np.ndarray:
    """Stored layout to the model's NCHW uint8."""
    if name == "mnist":
        return x[:, None, :, :]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass
class Splits:
    x_train: torch.Tensor  # uint8 NCHW
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def has_val(self) -> bool:
        """False with val_size 0: trained on every training image, nothing to validate or choose on."""
        return len(self.x_val) > 0


def make_splits(name: str, directory: str | Path = "", val_size: int = -1, seed: int = 0,
                train_limit: int = 0, test_limit: int = 0) -> Splits:
    """Train/validation split of the training set (seeded permutation), and the test set."""
    spec = _spec(name)
    a = load_arrays(name, directory)
    x, y = torch.from_numpy(to_nchw(name, a["x_train"])), torch.from_numpy(a["y_train"].astype(np.int64))
    n_val = spec.val_size if val_size < 0 else val_size
    if n_val >= len(x):
        raise DataError(f"val_size {n_val} leaves no training images ({len(x)} in total)")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if train_limit:
        train_idx = train_idx[:train_limit]
    xt, yt = torch.from_numpy(to_nchw(name, a["x_test"])), torch.from_numpy(a["y_test"].astype(np.int64))
    if test_limit:
        xt, yt = xt[:test_limit], yt[:test_limit]
    return Splits(x[train_idx].contiguous(), y[train_idx], x[val_idx].contiguous(), y[val_idx], xt, yt)


def augment_pad(name: str) -> int:
    return 4 if name == "cifar10" else 2


def augment_variants(name: str) -> int:
    """How many different images augment() can make of one: crop offsets (and flips for CIFAR-10)."""
    k = 2 * augment_pad(name) + 1
    return k * k * (2 if name == "cifar10" else 1)


def augment(x: torch.Tensor, name: str, gen: torch.Generator | None, variant: torch.Tensor | None = None,
            draws: bool = False):
    """Batch augmentation on uint8 NCHW: CIFAR-10 flip + 4-pixel edge-padded crop (study); MNIST 2-pixel shifts.

    Runs where x lives (CPU or GPU); the random draws come from ``gen``, which must be on the same device.
    variant: the draws given instead (one number per image, 0..augment_variants-1); draws=True also returns
    each image's variant number (a teacher's outputs are cached by it)."""
    n, c, h, w = x.shape
    dev = x.device
    pad = augment_pad(name)
    k = 2 * pad + 1
    mode = "replicate" if name == "cifar10" else "constant"
    xp = torch.nn.functional.pad(x.float(), (pad,) * 4, mode=mode)
    if variant is None:
        dy = torch.randint(0, k, (n,), generator=gen, device=dev)
        dx = torch.randint(0, k, (n,), generator=gen, device=dev)
        flip = (torch.rand(n, generator=gen, device=dev) < 0.5 if name == "cifar10"
                else torch.zeros(n, dtype=torch.bool, device=dev))
    else:
        dy, dx, flip = variant % (k * k) // k, variant % k, variant >= k * k
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])  # n, h
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])  # n, w
    cols = torch.where(flip[:, None], cols.flip(-1), cols)  # a flip reverses the crop's column order: no host sync
    out = xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    return (out, flip.long() * k * k + dy * k + dx) if draws else out


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            gen: torch.Generator | None = None, aug_name: str | None = None, with_index: bool = False):
    """Yields (float pixels 0..255 NCHW, labels) on the device of x. Whole dataset in memory: no worker
    processes; with x on the GPU, shuffling and augmentation run there too (gen on that device).
    with_index: also each image's index in x and augmentation variant (0 without augmentation)."""
    dev = x.device
    idx = torch.randperm(len(x), generator=gen, device=dev) if shuffle else torch.arange(len(x), device=dev)
    for i in range(0, len(x), batch_size):
        j = idx[i:i + batch_size]
        xb = x[j]
        if aug_name:
            xb, v = augment(xb, aug_name, gen, draws=True)
        else:
            xb, v = xb.float(), torch.zeros_like(j)
        yield (xb, y[j], j, v) if with_index else (xb, y[j])


# --- download (make data) -------------------------------------------------------------------

# The files torchvision downloads, with torchvision's checksums. Used directly when torchvision
# cannot be imported (the CPU torch build here has no matching torchvision wheel).
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def parse_idx(raw: bytes) -> np.ndarray:
    """IDX format (MNIST): big-endian magic with dtype code and rank, then the dimensions."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"IDX file holds {data.size} bytes for dimensions {list(dims)}")
    return data.reshape(dims)


def parse_cifar_batches(tar_bytes: bytes) -> dict:
    """cifar-10-python.tar.gz: five pickled training batches and one test batch."""
    def read(tf, member):
        d = pickle.load(tf.extractfile(member), encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], dtype=np.uint8)

    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tf:
        members = {Path(m.name).name: m for m in tf.getmembers()}
        train = [read(tf, members[f"data_batch_{i}"]) for i in range(1, 6)]
        x_test, y_test = read(tf, members["test_batch"])
    return {"x_train": np.concatenate([t[0] for t in train]), "y_train": np.concatenate([t[1] for t in train]),
            "x_test": np.ascontiguousarray(x_test), "y_test": y_test}


def _fetch(url: str, md5: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        raw = r.read()
    if hashlib.md5(raw).hexdigest() != md5:
        raise DataError(f"{url}: checksum mismatch (download damaged); run 'make data' again")
    return raw


def _via_torchvision(name: str, cache: Path) -> dict | None:
    try:
        import torchvision  # noqa: F401
        from torchvision import datasets
    except Exception:  # no wheel matches the CPU torch build here; RuntimeError at import
        return None
    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[name]
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(str(cache), train=train, download=True)
        out[f"x_{split}"] = np.asarray(ds.data, dtype=np.uint8)
        out[f"y_{split}"] = np.asarray(ds.targets, dtype=np.uint8)
    return out


def _direct(name: str) -> dict:
    if name == "mnist":
        raw = {f: gzip.decompress(_fetch(MNIST_MIRROR + f, md5)) for f, md5 in MNIST_FILES.items()}
        return {"x_train": parse_idx(raw["train-images-idx3-ubyte.gz"]),
                "y_train": parse_idx(raw["train-labels-idx1-ubyte.gz"]),
                "x_test": parse_idx(raw["t10k-images-idx3-ubyte.gz"]),
                "y_test": parse_idx(raw["t10k-labels-idx1-ubyte.gz"])}
    return parse_cifar_batches(_fetch(CIFAR10_URL, CIFAR10_MD5))


def save_arrays(arrays: dict, path: Path) -> None:
    """Atomic write: a killed download never leaves a half-written .npz behind."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def download(name: str, directory: str | Path = "") -> Path:
    """Downloads through torchvision (or the same files directly) into ``<dir>/<name>.npz``."""
    spec = _spec(name)
    out = data_dir(str(directory)) / f"{name}.npz"
    if out.is_file():
        load_arrays(name, out.parent)
        return out
    arrays = _via_torchvision(name, out.parent / "torchvision") or _direct(name)
    if name == "cifar10" and arrays["x_train"].shape[1:] != spec.image_shape:
        raise DataError(f"downloaded CIFAR-10 has shape {arrays['x_train'].shape}")
    save_arrays(arrays, out)
    load_arrays(name, out.parent)
    return out
