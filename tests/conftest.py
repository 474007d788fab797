"""Shared fixtures: the offline datasets beside the checkout and a tiny trained binary LeNet5."""
import os
from pathlib import Path

import pytest

from common.paths import OFFLINE_DATASETS, ROOT  # the project's packages are installed (make setup: pyproject.toml)

DATA = Path(os.environ.get("BNN_DATA_DIR") or OFFLINE_DATASETS)
os.environ["BNN_DATA_DIR"] = str(DATA)

import torch  # noqa: E402

from common import compat  # noqa: E402,F401

# make test's pytest-xdist workers share the cores: each gets its share of torch threads (OpenMP threads beyond
# the free cores wait on each other at every barrier), and so do the tests' own trainings
WORKER_THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
torch.set_num_threads(WORKER_THREADS)

# `make test` runs the suite on pytest-xdist workers with --dist loadgroup: the tests sharing one of these
# session builds go to one worker, so that each build is made once
SHARED_BUILDS = ("vgg_zcu104_build", "vgg_pynqz1_build", "vgg_kv260_build", "lenet5_build")


def _shared_build(item) -> str | None:
    names = set(getattr(item, "fixturenames", ()))
    which = getattr(getattr(item, "callspec", None), "params", {}).get("which")  # getfixturevalue(f"{which}_build")
    names |= {f"{which}_build"} if which else set()
    return next((b for b in SHARED_BUILDS if b in names), None)


def missing_prerequisite(what: str, fix: str):
    """A test's prerequisite is missing: in CI (CI set) the test fails, naming it and how to provide it,
    since a suite that passes by skipping proves nothing; elsewhere it skips with the same reason."""
    reason = f"missing prerequisite: {what}; {fix}"
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI runs every test: a missing prerequisite fails)", pytrace=False)
    pytest.skip(reason)


DATA_FIX = f"make data downloads them into ./data, or set BNN_DATA_DIR (looked in {DATA})"


def pytest_runtest_setup(item):
    """Before any fixture of the test runs (a session build reads the datasets too)."""
    if "needs_data" in item.keywords and not (DATA / "mnist.npz").is_file():
        missing_prerequisite("the MNIST and CIFAR-10 datasets", DATA_FIX)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        build = _shared_build(item)
        if build:
            item.add_marker(pytest.mark.xdist_group(build))
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S))  # the first of a group builds it (up to 14 min)


BUILD_TIMEOUT_S = 2400


def workers() -> int:
    """How many pytest-xdist workers share this machine (1 without xdist): timing bounds scale with it."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def tiny_config(**kw):
    from tools.floor_spread import TINY  # the one definition, which the floors' spread is measured on
    from training.config import TrainConfig
    base = dict(TINY, threads=WORKER_THREADS, data_dir=str(DATA))
    base.update(kw)
    cfg = TrainConfig(**base)
    cfg.validate()
    return cfg


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A binary LeNet5 at quarter width trained for two epochs on 3,000 real images (~10 s)."""
    from training.train import train
    out = tmp_path_factory.mktemp("runs")
    return train(tiny_config(results=str(out), epochs=2), run_id="tiny", log=lambda *a: None)


@pytest.fixture(scope="session")
def built(tiny_run, tmp_path_factory):
    """The tiny LeNet5 built to HW code at 2,000 FPS without verification (~25 s)."""
    from hw_build.flow import HwConfig, build
    out = tmp_path_factory.mktemp("simbuild")
    build(HwConfig(checkpoint=tiny_run, board="Pynq-Z1", target_fps=2000, out=out, verify_images=0,
                   data_dir=str(DATA)), log=lambda *a: None)
    return out


def _shipped(tmp_path_factory, checkpoint, board, **kw):
    from hw_build.flow import HwConfig, build
    out = tmp_path_factory.mktemp(f"{Path(checkpoint).name}_{board}")
    build(HwConfig(checkpoint=ROOT / checkpoint, board=board, out=out, data_dir=str(DATA), **kw), log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def lenet5_build(tmp_path_factory):
    """The shipped binary LeNet5 with its Pynq-Z1 folding, verified on the whole test set (the default)."""
    return _shipped(tmp_path_factory, "pretrained/lenet5/binary", "Pynq-Z1")


@pytest.fixture(scope="session")
def vgg_zcu104_build(tmp_path_factory):
    """The shipped binary VGGNet7 with its ZCU104 folding to the package, every stage verified on 10 images."""
    return _shipped(tmp_path_factory, "pretrained/vggnet7/binary", "ZCU104", verify_images=10)


@pytest.fixture(scope="session")
def vgg_kv260_build(tmp_path_factory):
    """The shipped binary VGGNet7 with its KV260 folding to the package, unverified (the ZCU104 build is)."""
    return _shipped(tmp_path_factory, "pretrained/vggnet7/binary", "KV260", verify_images=0)


@pytest.fixture(scope="session")
def vgg_pynqz1_build(tmp_path_factory):
    """The shipped half-width VGGNet7 with its Pynq-Z1 folding to HW code, every stage verified on 10 images."""
    return _shipped(tmp_path_factory, "pretrained/vggnet7/pynqz1", "Pynq-Z1", verify_images=10, stop_after="hw_codegen")


def init_checkpoint(path, **kw):
    """An untrained net whose BN statistics come from two batches of random pixels: with the default
    statistics every threshold sits exactly at 0, where float summation order decides the sign."""
    import torch

    from training.config import TrainConfig
    from training.models import build_model
    cfg = TrainConfig(**kw)
    cfg.validate()
    model = build_model(cfg).train()
    from training.models import INPUT_CHW
    with torch.no_grad():
        for _ in range(2):
            model(torch.randint(0, 256, (32, *INPUT_CHW[cfg.model])).float())
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    return path


SLOW_S = 30  # the `slow` marker's meaning: over this on 2 cores


def pytest_terminal_summary(terminalreporter):
    """One line counting skips by reason, and the tests over SLOW_S seconds not marked slow (make test-fast
    would run them). With xdist the reports come from the workers: read them here, on the controller."""
    from collections import Counter
    tr = terminalreporter
    reasons = Counter(str(r.longrepr[2]) if isinstance(r.longrepr, tuple) else str(r.longrepr)
                      for r in tr.stats.get("skipped", []))
    if reasons:
        tr.write_line("skipped by reason: " + "; ".join(f"{n} x {why}" for why, n in reasons.most_common()))
    unmarked = sorted({r.nodeid for key in ("passed", "failed") for r in tr.stats.get(key, [])
                       if r.when == "call" and r.duration > SLOW_S and "slow" not in r.keywords})
    if unmarked:
        tr.write_line(f"over {SLOW_S} s but not marked slow: " + ", ".join(unmarked))
