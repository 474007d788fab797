"""--resume of a run that cannot or need not continue: finished (exit 0, nothing changed), no resume point,
a damaged last.pt, a params.yml edited since the run started (exit 2, one line naming the cause and the fix)."""
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.needs_data


def _resume(run):
    return subprocess.run([sys.executable, "-m", "training", "--resume", str(run)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _snapshot(run):
    return {f.name: f.read_bytes() for f in sorted(run.iterdir()) if f.is_file()}


def _refused(r, *words):
    line = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "Traceback" not in r.stderr and line.startswith("error:"), r.stderr
    assert all(w in line for w in words), line


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "tiny" / "run-1")
    before = _snapshot(run)
    r = _resume(run)
    assert r.returncode == 0 and "has trained all 2 epochs: nothing to resume" in r.stdout, r.stderr
    assert _snapshot(run) == before


@pytest.mark.parametrize("edit, words", [({"lr": 0.1}, ["lr: 0.005 -> 0.1"]),
                                         ({"epochs": 5}, ["epochs: 2 -> 5"]),
                                         ({"width_scale": 0.5}, ["width_scale: 0.25 -> 0.5"])])
def test_resume_refuses_an_edited_params_file_naming_the_keys(tiny_run, tmp_path, edit, words):
    run = shutil.copytree(tiny_run, tmp_path / "tiny" / "run-1")
    params = yaml.safe_load((run / "params.yml").read_text())
    params.update(edit)
    (run / "params.yml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = _snapshot(run)
    _refused(_resume(run), "params.yml was edited", *words, "--params")
    assert _snapshot(run) == before


def test_resume_without_a_resume_point_says_how_to_start_again(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "tiny" / "run-1")
    (run / "last.pt").unlink()
    _refused(_resume(run), "no resume point", "python -m training tiny --params")
    (run / "last.pt").write_bytes(b"not a checkpoint")
    _refused(_resume(run), "last.pt is damaged")
