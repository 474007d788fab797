"""Faults a user's machine brings, injected: read-only destinations (a read-only tmpfs mount), peers that
answer but are not what was asked for (loopback only). Each asserts the exit code, the one line, and that
nothing already there was lost."""
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import DATA, ROOT, WORKER_THREADS, missing_prerequisite

ENV = {**os.environ, "BNN_DATA_DIR": str(DATA)}



def _as_in_a_terminal() -> None:
    """The child gets SIGINT as a user's shell gives it: a suite started in the background by a non-interactive
    shell (`cmd &`) inherits SIGINT ignored, and Ctrl-C would then never reach the command under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT,
                          preexec_fn=_as_in_a_terminal, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _one_line(r, code: int, *needles: str) -> str:
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == code and "Traceback" not in r.stderr and err.startswith("error: "), r.stderr[-2000:]
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def read_only(tmp_path):
    """A folder on a read-only file system (a tmpfs mounted ro), with `seed` copied in before it goes ro."""
    mounts = []

    def make(seed: dict[str, Path] | None = None) -> Path:
        where = tmp_path / f"ro{len(mounts)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True,
                           text=True)
        if r.returncode:
            missing_prerequisite(f"mounting a tmpfs ({r.stderr.strip()})", "run the tests as root (CI does)")
        mounts.append(where)
        for name, src in (seed or {}).items():
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, where / name)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        return where
    yield make
    for m in mounts:
        subprocess.run(["umount", str(m)], capture_output=True)


@pytest.mark.needs_data
def test_read_only_destinations_are_refused_before_any_work(read_only, built, tiny_run):
    ro = read_only()
    cases = [
        (["-m", "hw_build", "--checkpoint", tiny_run, "--target-fps", 1000, "--out", ro / "b"], "build folder"),
        (["-m", "sim", "--build", built, "--mode", "python", "-n", 10, "--out", ro / "s"], "simulation output folder"),
        (["-m", "sweep", "configs/sweep/lenet5.yml", "--quick", "--out", ro / "w"], "sweep output folder"),
        (["-m", "training", "x", "--params", "configs/lenet5_binary.yml", "--results", ro / "r"], "results folder"),
    ]
    for argv, what in cases:
        _one_line(_run(*argv), 2, f"error: {what} {ro}/", "Read-only file system", "a folder you can write to")
    r = _run(ROOT / "driver" / "infer.py", "--backend", "sim", "--package", Path(built) / "deploy", "-n", 10,
             "--no-progress", "--out", ro / "report.json")
    assert r.returncode == 2 and "cannot be written" in r.stderr and "images:" not in r.stdout, r.stderr[-1500:]
    assert sorted(os.listdir(ro)) == []


@pytest.mark.needs_data
def test_a_read_only_run_folder_is_refused_before_finishing_or_resuming(read_only, tiny_run):
    ro = read_only({"run": Path(tiny_run)})
    before = {p.name: p.stat().st_mtime for p in (ro / "run").iterdir()}
    for flag in ("--finish", "--resume"):
        _one_line(_run("-m", "training", flag, ro / "run"), 2, f"run folder {ro / 'run'}", "Read-only file system",
                  f"give {flag} a folder you can write to")
    _one_line(_run("-m", "training", "--export", ro / "run"), 2, "Read-only file system", "give --export")
    assert {p.name: p.stat().st_mtime for p in (ro / "run").iterdir()} == before


class _Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_error(404)

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("peer", ["web server", "silent port"])
def test_a_cluster_address_that_is_not_a_dask_scheduler_is_named_within_seconds(tmp_path, peer):
    """The Dask dashboard's port given instead of the scheduler's, or a port that accepts and never answers:
    refused (exit 3) within the handshake's bound, nothing written, no lock left."""
    if peer == "web server":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Web)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port, stop = server.server_address[1], server.shutdown
    else:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        port, stop = sock.getsockname()[1], sock.close
    try:
        r = _run("-m", "sweep", "configs/sweep/lenet5.yml", "--quick", "--out", tmp_path / "w", "--cluster",
                 f"tcp://127.0.0.1:{port}", timeout=120)
    finally:
        stop()
    _one_line(r, 3, f"--cluster tcp://127.0.0.1:{port}: something answers there, but not as a Dask scheduler",
              "8786")
    assert not (tmp_path / "w").exists()


@pytest.mark.needs_data
@pytest.mark.parametrize("hwh", ['<?xml version="1.0"?>\n<EDKSYSTEM></EDKSYSTEM>\n', "<EDKSYSTEM><MODULES>"])
def test_a_damaged_hwh_is_named_with_the_command_that_writes_it_again(built, tmp_path, hwh):
    package = shutil.copytree(Path(built) / "deploy", tmp_path / "deploy")
    (package / "bitfile").mkdir(exist_ok=True)
    (package / "bitfile" / "finn-accel.hwh").write_text(hwh)
    r = _run(ROOT / "driver" / "infer.py", "--backend", "emulated", "--package", package, "--build", built, "-n", 10,
             "--no-progress")
    _one_line(r, 2, f"PYNQ cannot read the design description {package / 'bitfile' / 'finn-accel.hwh'}",
              "--start-step deployment_package")


# ---- interrupts and kills at named points of the work (common/faults.py) ---------------------------------
TINY = ["--epochs", "2", "--train-limit", "3000", "--test-limit", "500", "--val-size", "1000", "--width-scale",
        "0.25", "--batch-size", "100", "--threads", str(WORKER_THREADS), "--compile", "off", "--amp", "none",
        "--time-budget", "0"]


def _faulty(point: str, *args, sig: str = "INT"):
    env = {**ENV, "BNN_FAULT_AT": point, "BNN_FAULT_SIGNAL": sig}
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT,
                          preexec_fn=_as_in_a_terminal, env=env, capture_output=True, text=True,
                          timeout=600)


def _run_dir(results: Path) -> Path:
    (run,) = list(results.glob("x/run-*"))
    return run


@pytest.mark.needs_data
@pytest.mark.slow
def test_training_interrupted_or_killed_at_each_phase_says_what_continues_and_it_does(tmp_path):
    # Ctrl-C in the first epoch: nothing saved, nothing to resume, and it says so
    r = _faulty("train:epoch1", "-m", "training", "x", "--params", "configs/lenet5_binary.yml", *TINY,
                "--results", tmp_path / "a")
    run = _run_dir(tmp_path / "a")
    assert r.returncode == 130 and "before any epoch was saved: there is nothing to resume" in r.stdout, r.stdout
    assert not (run / "last.pt").exists() and "--resume" not in r.stdout
    # Ctrl-C in the second epoch: the first is kept, --resume continues and finishes
    r = _faulty("train:epoch2", "-m", "training", "x", "--params", "configs/lenet5_binary.yml", *TINY,
                "--results", tmp_path / "b")
    run = _run_dir(tmp_path / "b")
    assert r.returncode == 130 and f"Continue with: python -m training --resume {run}" in r.stdout, r.stdout
    r = _run("-m", "training", "--resume", run)
    assert r.returncode == 0 and (run / "final.pt").is_file(), r.stderr[-1500:]
    # Ctrl-C while finishing: every epoch saved, and --resume itself finishes the run
    r = _faulty("train:finish", "-m", "training", "x", "--params", "configs/lenet5_binary.yml", *TINY,
                "--results", tmp_path / "c")
    run = _run_dir(tmp_path / "c")
    assert r.returncode == 130 and f"Finish it with: python -m training --resume {run}" in r.stdout, r.stdout
    assert not (run / "final.pt").exists() and (run / "last.pt").is_file()
    r = _run("-m", "training", "--resume", run)
    assert r.returncode == 0 and "was not finished: finishing it" in r.stdout, r.stdout + r.stderr[-1500:]
    for f in ("final.pt", "test_accuracy.txt", "curves.png"):
        assert (run / f).is_file(), f
    # killed (SIGKILL, no handler runs) in the second epoch: the first epoch's checkpoint is whole and resumes
    r = _faulty("train:epoch2", "-m", "training", "x", "--params", "configs/lenet5_binary.yml", *TINY,
                "--results", tmp_path / "d", sig="KILL")
    run = _run_dir(tmp_path / "d")
    assert r.returncode == -9 and (run / "last.pt").is_file()
    r = _run("-m", "training", "--resume", run)
    assert r.returncode == 0 and (run / "final.pt").is_file(), r.stderr[-1500:]


BUILD = ["-m", "hw_build", "--checkpoint", "pretrained/lenet5/binary", "--board", "Pynq-Z1", "--verify-images", "100",
         "--stop-after", "estimates"]


@pytest.mark.needs_data
@pytest.mark.slow
def test_a_build_interrupted_or_killed_at_each_phase_continues_from_what_it_kept(tmp_path):
    # before the shipped folding is checked (a staged build): nothing kept, and it says so
    out = tmp_path / "a"
    r = _faulty("build:folding", *BUILD, "--out", out)
    assert r.returncode == 130 and f"nothing of this build was kept in {out}; start it again" in r.stdout, r.stdout
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no staging folder left either
    # after the folding: the steps before are kept and the command it names continues to the end
    out = tmp_path / "b"
    r = _faulty("build:estimates", *BUILD, "--out", out)
    cmd = f"python -m hw_build --replay {out} --start-step estimates"
    assert r.returncode == 130 and cmd in r.stdout, r.stdout
    r = _run(*cmd.split()[1:])
    assert r.returncode == 0 and "resuming at estimates" in r.stdout, r.stderr[-1500:]
    assert (out / "report" / "estimates.json").is_file()
    # killed in a step: build_state.json records every step done before it, so --start-step goes on
    out = tmp_path / "c"
    r = _faulty("build:minimize_bit_width", *BUILD, "--out", out, sig="KILL")
    assert r.returncode == -9
    import json
    assert json.loads((out / "build_state.json").read_text())["done"][-1] == "folding"
    r = _run("-m", "hw_build", "--replay", out, "--start-step", "minimize_bit_width")
    assert r.returncode == 0 and (out / "report" / "estimates.json").is_file(), r.stderr[-1500:]


# ---- moved and copied build folders ------------------------------------------------------------------------
@pytest.mark.needs_data
@pytest.mark.slow
def test_a_moved_or_copied_build_reads_only_its_own_files(built, tmp_path):
    """mv and cp -a of a build folder: the simulator (python; Verilator on the RTL the build generated, in the
    copy), the driver's sim backend and a --start-step resume all run from the folder's own files; a copy whose
    original is gone still runs, so it never read the original's."""
    moved = tmp_path / "moved"
    shutil.copytree(built, tmp_path / "orig", symlinks=True)
    (tmp_path / "orig").rename(moved)
    r = _run("-m", "sim", "--build", moved, "--mode", "python", "-n", 5)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-1500:]
    r = _run(ROOT / "driver" / "infer.py", "--backend", "sim", "--package", moved / "deploy", "-n", 5, "--no-progress")
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr[-1500:]
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy, symlinks=True)
    shutil.rmtree(moved)  # the original gone: the copy must not need it
    r = _run("-m", "sim", "--build", copy, "--mode", "rtlsim", "-n", 5)
    assert r.returncode == 0, r.stderr[-1500:]
    r = _run("-m", "hw_build", "--replay", copy, "--start-step", "estimates")
    assert r.returncode == 0 and "resuming at estimates" in r.stdout, r.stderr[-1500:]
    assert not any(str(moved) in line for line in (copy / "build.log").read_text().splitlines()[-40:])


# ---- a full disk (a file-size limit: the same ENOSPC-like failure for every write) -------------------------
def _limited(limit_bytes: int, *args):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600, preexec_fn=limit)


@pytest.mark.needs_data
def test_a_full_disk_is_one_line_and_keeps_what_was_written(tmp_path):
    """Writes that fail for want of space (here RLIMIT_FSIZE: a checkpoint or an ONNX file cannot grow past
    300 kB) end the command with one line naming the file and the fix, exit 2; the files written before stay
    whole (each checkpoint is written atomically)."""
    r = _limited(300_000, "-m", "training", "x", "--params", "configs/lenet5_binary.yml", *TINY,
                 "--results", tmp_path / "t")
    err = _one_line(r, 2, "could not be written", "what was there before is kept", "free space")
    run = _run_dir(tmp_path / "t")
    assert str(run) in err and not list(run.glob(".*.part"))
    import torch
    for ck in run.glob("*.pt"):
        torch.load(ck, weights_only=False)  # whole
    r = _limited(1_500_000, "-m", "hw_build", "--checkpoint", "pretrained/lenet5/binary", "--verify-images", 10,
                 "--stop-after", "estimates", "--out", tmp_path / "b")
    _one_line(r, 2, "failed (File too large): free space on that disk", str(tmp_path / "b"))


@pytest.mark.needs_data
def test_an_interrupted_simulation_says_what_continues(built):
    r = _faulty("sim:start", "-m", "sim", "--build", built, "--mode", "python", "-n", 10)
    assert r.returncode == 130 and "interrupted: a simulation keeps no partial result; run the same command" \
        in r.stderr, r.stderr[-1500:]
