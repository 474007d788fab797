"""Running a sweep: each point (one option set) is trained, then built to FINN estimates for every frame-rate
target and verified on real test images; results are cached per point by configuration.

results/sweep/<spec>/points/<key>/     key: hash of the point's resolved training config
  train/run-*/                         the training run (final.pt, metrics, curves)
  train.json                           test accuracy, run folder, seconds       (written when training is done)
  build_<fps>/                         the hardware build to estimates
  build_<fps>.json                     estimates, fit, verification            (written when the build is done)

A rerun skips every finished part; an interrupted sweep resumes where it stopped; a changed option changes
only its own points' keys, so only they retrain. Points run in a local process pool by default, or on a
Dask cluster (`--cluster tcp://scheduler:8786`, or `--cluster local:N` for a local one).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from common.files import write_json

from .spec import ROOT, Spec


def tasks(spec: Spec, out: Path, data_dir: str) -> list[dict]:
    """One self-contained task per point: what a worker anywhere needs to run it."""
    res = []
    for name in spec.points:
        cfg = spec.point_config(name).to_dict()
        cfg.update(data_dir=data_dir, threads=1)  # one core per point: the pool gives the parallelism
        for k in ("distill_from", "init_from"):  # spec paths are relative to the repository root
            if cfg[k] and not Path(cfg[k]).is_absolute():
                cfg[k] = str(ROOT / cfg[k])
        res.append({"name": name, "key": spec.key(name), "config": cfg, "dir": str(out / "points" / spec.key(name)),
                    "board": spec.board, "fps": [int(f) for f in spec.fps], "verify_images": spec.verify_images,
                    "specialize": spec.specialize, "max_utilization": spec.max_utilization,
                    "root": str(Path(__file__).resolve().parent.parent)})
    return res


def run_point(task: dict) -> dict:
    """Train (unless cached), then build for each target (unless cached). Runs in a worker process; what
    training and FINN print goes to the point's log.txt."""
    Path(task["dir"]).mkdir(parents=True, exist_ok=True)
    with open(Path(task["dir"]) / "log.txt", "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return _run_point(task)


def _run_point(task: dict) -> dict:
    from common import compat  # noqa: F401
    from training.config import TrainConfig
    from training.train import train
    d = Path(task["dir"])
    d.mkdir(parents=True, exist_ok=True)
    quiet = lambda *a, **k: None  # noqa: E731
    tj = d / "train.json"
    if not tj.is_file():
        t0 = time.time()
        cfg = TrainConfig.from_dict({**task["config"], "results": str(d)}, f"sweep point {task['name']}")
        run = train(cfg, run_id="train", log=quiet)
        acc = float((run / "test_accuracy.txt").read_text().split()[0])
        ran = yaml.safe_load((run / "params.yml").read_text())  # 'auto' precision as resolved on the worker
        write_json(tj, {"run": str(run), "test_acc": acc, "train_s": round(time.time() - t0, 1),
                         "amp": ran.get("amp"), "compile": ran.get("compile"), "config": task["config"]})
    trained = json.loads(tj.read_text())
    builds = {}
    for fps in task["fps"]:
        bj = d / f"build_{fps}.json"
        if not bj.is_file():
            write_json(bj, _build(task, Path(trained["run"]), fps, d / f"build_{fps}", quiet))
        builds[fps] = json.loads(bj.read_text())
    return {"name": task["name"], "key": task["key"], "test_acc": trained["test_acc"],
            "train_s": trained["train_s"], "builds": builds}


def _build(task, run: Path, fps: int, out: Path, log) -> dict:
    from common.errors import UserError
    from hw_build.build_folder import BuildFolder
    from hw_build.errors import DoesNotFit
    from hw_build.flow import HwConfig, build
    t0 = time.time()
    hw = HwConfig(checkpoint=run, board=task["board"], target_fps=fps, out=out, verify_images=task["verify_images"],
                  specialize=Path(task["root"]) / task["specialize"] if task["specialize"] else None,
                  max_utilization=task["max_utilization"], stop_after="estimates", data_dir=task["config"]["data_dir"])
    note, fits, verified = "", True, None
    try:
        ctx = build(hw, log=log)
        verified = all(r.ok for r in ctx.verifier.results) if ctx.verifier else None
    except DoesNotFit as e:
        fits, note = False, str(e)
    except UserError as e:  # a build error of this option set: recorded, the sweep goes on
        fits, note = False, f"build failed: {' '.join(str(e).split())}"
    report = BuildFolder(out).verification / "report.json"
    rep = json.loads(report.read_text()) if report.is_file() else {}
    if verified is None and rep:
        verified = rep.get("all_ok")
    est = BuildFolder(out).estimates()
    keep = ("fps", "latency_us", "total", "utilisation_pct", "fps_per_klut", "bottleneck", "max_cycles")
    return {"target_fps": fps, "fits": fits and bool(est), "verified": verified,
            "verified_images": rep.get("images"), "note": note, "build_s": round(time.time() - t0, 1),
            **{k: est.get(k) for k in keep}}


def run_sweep(spec: Spec, out: Path, data_dir: str, cluster: str = "", workers: int = 0, log=print) -> list[dict]:
    from tqdm import tqdm
    todo = tasks(spec, out, data_dir)
    results = []
    with tqdm(total=len(todo), desc=f"sweep {spec.name}", unit="point", disable=None) as bar:
        for r in _execute(todo, cluster, workers):
            results.append(r)
            bar.update(1)
            log(f"  {r['name']:16s} test {r['test_acc']:.2f}%  "
                + "  ".join(f"{f}: {b['fps'] or 0:,.0f} FPS {'fits' if b['fits'] else 'no fit'}"
                            for f, b in r["builds"].items()))
    order = {t["name"]: i for i, t in enumerate(todo)}
    return sorted(results, key=lambda r: order[r["name"]])


def _execute(todo: list, cluster: str, workers: int):
    """Yields results as points finish: Dask when a cluster is named, else a local process pool."""
    if cluster:
        from distributed import Client, LocalCluster
        if cluster.startswith("local:"):
            lc = LocalCluster(n_workers=int(cluster.split(":")[1]), threads_per_worker=1, processes=True,
                              dashboard_address=None)
            client = Client(lc)
        else:
            lc, client = None, Client(cluster)
        try:
            from distributed import as_completed as dask_completed
            for fut in dask_completed([client.submit(run_point, t, pure=False) for t in todo]):
                yield fut.result()
        finally:
            client.close()
            if lc is not None:
                lc.close()
        return
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for fut in as_completed([pool.submit(run_point, t) for t in todo]):
            yield fut.result()
