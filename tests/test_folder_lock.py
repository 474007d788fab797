"""One process per output folder: a build folder, a run folder or a sweep output folder held by another
process is refused at once (exit 2, one line naming the folder and the holder); a lock left by a killed
process is taken over."""
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import DATA, ROOT, init_checkpoint

HOLD = ("import sys, time; from common.folder_lock import FolderLock; "
        "FolderLock(sys.argv[1], sys.argv[2]).acquire(); print('held', flush=True); time.sleep(120)")


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of a folder, as a running build would."""
    procs = []

    def hold(folder, what):  # what: the kind of folder, as the command that holds it names it
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p
    yield hold
    for p in procs:
        p.kill()
        p.wait()


def _run(*args):
    env = {**os.environ, "BNN_DATA_DIR": str(DATA)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def _refused(r, folder, pid):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines[-1].startswith("error:") and str(folder) in lines[-1] and f"process {pid}" in lines[-1], lines


@pytest.mark.needs_data
@pytest.mark.slow  # over 30 s on 2 cores (machine B: make test's list)
def test_second_build_into_a_held_folder_is_refused_and_a_killed_holder_is_taken_over(tmp_path, holder):
    ck = init_checkpoint(tmp_path / "ok.pt", model="lenet5", dataset="mnist", width_scale=0.25)
    out = tmp_path / "build"
    p = holder(out, "build folder")
    r = _run("-m", "hw_build", "--model", str(ck), "--out", str(out), "--verify-images", "0", "--stop-after", "export")
    _refused(r, out, p.pid)
    assert sorted(f.name for f in out.iterdir()) == [".lock"]  # nothing of the build written
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = _run("-m", "hw_build", "--model", str(ck), "--out", str(out), "--verify-images", "0", "--stop-after", "export")
    assert r.returncode == 0, r.stderr
    assert f"taking over from process {p.pid}" in r.stdout and (out / "model.onnx").is_file()


def unfinished_copy(run, dest):
    """A copy of a finished run whose last.pt says epoch 1 of 2: a run that can be resumed."""
    import torch
    shutil.copytree(run, dest)
    ck = torch.load(dest / "last.pt", weights_only=False)
    ck["epoch"] = 1
    torch.save(ck, dest / "last.pt")
    return dest


@pytest.mark.needs_data
def test_resuming_a_run_folder_in_use_is_refused(tiny_run, holder, tmp_path):
    run = unfinished_copy(tiny_run, tmp_path / "tiny" / "run-1")
    p = holder(run, "run folder")
    _refused(_run("-m", "training", "--resume", str(run)), run, p.pid)


def test_a_sweep_on_a_held_output_folder_is_refused(tmp_path, holder):
    out = tmp_path / "sweep"
    p = holder(out, "sweep output folder")
    _refused(_run("-m", "sweep", str(ROOT / "configs" / "sweep" / "lenet5.yml"), "--quick", "--out", str(out)),
             out, p.pid)


@pytest.mark.parametrize("command", ["hw_build", "sweep"])
def test_a_folder_the_project_did_not_make_is_never_written_into(tmp_path, command):
    """--out naming a user's own folder: refused before any work, exit 2, every file kept as it was."""
    mine = tmp_path / "mine"
    (mine / "intermediate").mkdir(parents=True)
    files = {"notes.txt": "my notes", "model.onnx": "my model", "intermediate/mine.onnx": "mine"}
    for name, text in files.items():
        (mine / name).write_text(text)
    argv = {"hw_build": ["-m", "hw_build", "--checkpoint", "pretrained/lenet5/binary", "--board", "Pynq-Z1",
                         "--out", str(mine)],
            "sweep": ["-m", "sweep", "configs/sweep/lenet5.yml", "--quick", "--out", str(mine)]}[command]
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == 2 and err.startswith(f"error: {mine} exists and is not a "), r.stderr[-1500:]
    assert "nothing in it was changed" in err
    assert sorted(str(p.relative_to(mine)) for p in mine.rglob("*")) == sorted(["intermediate", *files])
    assert all((mine / n).read_text() == t for n, t in files.items())


def test_a_simulation_never_writes_into_a_folder_it_did_not_make(built, tmp_path):
    from common.folder_lock import NotOurs
    from sim.run import SimOptions, simulate
    mine = tmp_path / "mine"
    (mine / "work").mkdir(parents=True)
    (mine / "work" / "keep.txt").write_text("mine")
    with pytest.raises(NotOurs, match="is not a simulation output folder this project made"):
        simulate(built, "python", 10, options=SimOptions(out=mine), log=lambda *a: None)
    assert (mine / "work" / "keep.txt").read_text() == "mine"
    simulate(built, "python", 10, options=SimOptions(out=tmp_path / "new"), log=lambda *a: None)
    # ours now: written again
    simulate(built, "python", 10, options=SimOptions(out=tmp_path / "new"), log=lambda *a: None)
