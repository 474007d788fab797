"""python -m sweep configs/sweep/lenet5.yml [--quick] [--cluster local:2 | tcp://host:8786]"""
from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path

from common import compat  # noqa: F401


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep",
        description="The capacity sweep on hardware cost: trains every option set of SPEC, builds each to FINN "
                    "estimates (everything counted) at every frame-rate target on the spec's board, verifies each "
                    "build on real test images, and writes table.csv, Pareto plots and findings. Finished points "
                    "are cached by configuration: a rerun skips them, an interrupted sweep resumes.")
    p.add_argument("spec", type=Path, help="sweep specification, e.g. configs/sweep/lenet5.yml")
    p.add_argument("--quick", action="store_true", help="the spec's tiny grid (its quick: block): what CI runs")
    p.add_argument("--cluster", default="", help="run the points on Dask: 'local:N' starts a local cluster of N "
                                                "worker processes, 'tcp://host:8786' joins a running scheduler "
                                                "(workers need this checkout and the datasets at the same paths); "
                                                "default: a local process pool")
    p.add_argument("--workers", type=int, default=0, help="processes of the local pool (default: the cores)")
    p.add_argument("--out", type=Path, help="output folder (default results/sweep/<spec name>[_quick])")
    p.add_argument("--data-dir", default="", help="dataset folder (default: $BNN_DATA_DIR, then ../shared/datasets)")
    return p


def main(argv=None) -> int:
    from hw_build.finn_env import command_line
    return command_line(_main, argv, "every finished point is kept in the output folder; the same "
                                         "command goes on from them (finished points are not trained or "
                                         "built again)")


def _main(argv=None) -> int:
    args = parser().parse_args(argv)
    from training.data import data_dir

    from .report import findings, plot, rows, write_table
    from .run import run_sweep
    from .spec import ROOT, SpecError, load_spec
    if args.workers < 0:
        raise SpecError(f"--workers must be >= 0, got {args.workers}")
    spec = load_spec(args.spec, args.quick)
    out = (args.out or ROOT / "results" / "sweep" / (spec.name + ("_quick" if args.quick else ""))).resolve()
    data = str(data_dir(args.data_dir))
    if args.cluster:
        check_cluster(args.cluster)
    from common.files import logged, require_destination
    from common.folder_lock import FolderLock
    lock = FolderLock(out, "sweep output folder", markers=("table.csv",))
    lock.check_ours()  # before the destination is probed (acquire checks it again, as for every folder)
    require_destination(out, "sweep output folder", "--out")
    with lock:  # a second sweep on the same folder is refused
        log = logged(lambda *a: print(*a, flush=True), out / "sweep.log")
        log(f"sweep {spec.name}: {len(spec.points)} option sets x {len(spec.fps)} frame-rate targets on "
            f"{spec.board} -> {out}")
        results = run_sweep(spec, out, data, args.cluster, args.workers, log=log)
        table = rows(results)
        write_table(table, out / "table.csv")
        plot(table, out, spec.board)
        text = findings(table, next(iter(spec.points)))
        (out / "findings.md").write_text(text)
        log(text + f"-> {out / 'table.csv'}, {out / 'pareto_lut.png'}, {out / 'pareto_fps.png'}, {out / 'findings.md'}")
    return 0


def check_cluster(cluster: str) -> None:
    """--cluster local:N or tcp://HOST:PORT with a scheduler answering there, before anything is written."""
    from common.errors import ToolError

    from .spec import SpecError
    if re.fullmatch(r"local:[1-9]\d*", cluster):
        return
    m = re.fullmatch(r"tcp://([^:/]+):(\d+)", cluster)
    if not m:
        raise SpecError(f"--cluster {cluster}: give local:N (N worker processes here) or tcp://HOST:PORT "
                        f"(a running Dask scheduler)")
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
    except OSError as e:
        raise ToolError(f"--cluster {cluster}: no Dask scheduler answers there ({e.strerror or e}); start one "
                        f"('dask scheduler', then 'dask worker {cluster}' in the project's environment) or use "
                        f"--cluster local:2") from None
    problem = dask_handshake(cluster, HANDSHAKE_S)
    if problem:
        raise ToolError(f"--cluster {cluster}: something answers there, but not as a Dask scheduler ({problem}); "
                        f"give the scheduler's address (tcp://HOST:8786 by default, not its dashboard's :8787)")


HANDSHAKE_S = 10  # how long a peer may take to answer Dask's handshake


def dask_handshake(address: str, timeout: float) -> str | None:
    """Dask's own connect (its handshake: each side sends its comm info) within `timeout` seconds; None when
    a Dask peer answered, else what went wrong. A web server or a silent port fails here, bounded in time."""
    import asyncio

    from distributed.comm import connect

    async def shake():
        comm = await connect(address, timeout=timeout)
        await comm.close()
    try:
        asyncio.run(asyncio.wait_for(shake(), timeout + 2))
    except (asyncio.TimeoutError, TimeoutError):
        return f"no answer to Dask's handshake within {timeout:g} s"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # garbage read as frame lengths: MemoryError, ValueError, ... from the comm layer
        return f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
    return None


if __name__ == "__main__":
    sys.exit(main())
