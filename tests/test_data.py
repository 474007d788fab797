import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
from conftest import DATA

from training.data import DataError, augment, load_arrays, make_splits, parse_cifar_batches, parse_idx

pytestmark = pytest.mark.needs_data


def test_offline_mnist_loads_and_splits_as_the_study():
    s = make_splits("mnist", DATA)
    assert s.x_train.shape == (50000, 1, 28, 28) and s.x_val.shape == (10000, 1, 28, 28)
    assert s.x_test.shape == (10000, 1, 28, 28) and s.x_train.dtype.is_floating_point is False
    assert int(s.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]) == 1


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="make data"):
        load_arrays("mnist", tmp_path)


def test_corrupt_file(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="corrupt"):
        load_arrays("mnist", tmp_path)


@pytest.mark.parametrize("change,needle", [
    (lambda a: a.update(x_train=a["x_train"][:100]), "x_train is uint8"),
    (lambda a: a.update(x_test=a["x_test"].astype(np.float32)), "x_test is float32"),
    (lambda a: a.update(y_test=a["y_test"] + 5), "labels 5..14, outside 0..9"),
    (lambda a: a.pop("y_train"), "lacks array"),
])
def test_malformed_arrays(tmp_path, change, needle):
    with np.load(DATA / "mnist.npz") as d:
        arrays = {k: d[k] for k in d.files}
    change(arrays)
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=needle) as e:
        load_arrays("mnist", tmp_path)
    assert "delete it and run 'make data', or point --data-dir" in str(e.value)  # the fix, every time


def test_cifar_copied_as_mnist_is_named_as_such(tmp_path):
    import shutil
    shutil.copyfile(DATA / "cifar10.npz", tmp_path / "mnist.npz")
    with pytest.raises(DataError, match=r"the shape of cifar10: a copy of cifar10.npz\?\); it is not the project's"):
        load_arrays("mnist", tmp_path)


def test_idx_parser_reads_the_original_format():
    with np.load(DATA / "mnist.npz") as d:
        x = d["x_test"][:50]
    raw = bytes([0, 0, 8, 3]) + np.array(x.shape, dtype=">u4").tobytes() + x.tobytes()
    assert np.array_equal(parse_idx(gzip.decompress(gzip.compress(raw))), x)
    with pytest.raises(DataError):
        parse_idx(raw[:-1])


def test_cifar_pickle_parser_reads_the_original_layout():
    with np.load(DATA / "cifar10.npz") as d:
        x, y = d["x_test"][:12], d["y_test"][:12]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            blob = pickle.dumps({b"data": x.transpose(0, 3, 1, 2).reshape(12, 3072), b"labels": list(y)})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    a = parse_cifar_batches(buf.getvalue())
    assert np.array_equal(a["x_test"], x) and np.array_equal(a["y_train"][:12], y)
    assert a["x_train"].shape == (60, 32, 32, 3)


def test_augmentation_keeps_shape_and_pixels():
    import torch
    s = make_splits("cifar10", DATA, train_limit=8, test_limit=1)
    out = augment(s.x_train, "cifar10", torch.Generator().manual_seed(0))
    assert out.shape == s.x_train.shape and out.min() >= 0 and out.max() <= 255


def _augment_before_this_change(x, name, gen):
    """The CPU augmentation as it was (flip applied to the crop): the device-agnostic one must equal it."""
    import torch
    n, _, h, w = x.shape
    pad = 4 if name == "cifar10" else 2
    xp = torch.nn.functional.pad(x.float(), (pad,) * 4, mode="replicate" if name == "cifar10" else "constant")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows, cols = dy[:, None] + torch.arange(h)[None, :], dx[:, None] + torch.arange(w)[None, :]
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    if name == "cifar10":
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_device_agnostic_augmentation_draws_and_returns_what_the_cpu_one_did(name):
    import torch
    x = torch.from_numpy(__import__("training.data", fromlist=["to_nchw"]).to_nchw(
        name, load_arrays(name, DATA)["x_test"][:200]))
    a = augment(x, name, torch.Generator().manual_seed(3))
    b = _augment_before_this_change(x, name, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # and it is a real augmentation: crops and flips move pixels, never invent values
    assert not torch.equal(a, x.float()) and set(a.unique().tolist()) <= set(range(256))


def test_batches_stay_on_the_device_of_the_data():
    import torch

    from training.data import batches
    x = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(10)
    xb, yb = next(batches(x, y, 4, True, torch.Generator().manual_seed(0), "mnist"))
    assert xb.device == x.device and xb.shape == (4, 1, 28, 28) and xb.dtype == torch.float32
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))[:4]
    assert torch.equal(yb, order)  # the shuffle is the seeded one, drawn where the data lives
