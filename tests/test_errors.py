"""The error contract, table-driven over every command: each bad input exits with its code (2 bad input,
3 missing tool), prints one line that names the problem, shows no traceback, and writes nothing."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA, ROOT, init_checkpoint

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    ck = init_checkpoint(d / "ok.pt", model="lenet5", dataset="mnist", width_scale=0.25)
    init_checkpoint(d / "float.pt", model="lenet5", dataset="mnist", width_scale=0.25, binarize=False)
    (d / "trunc.pt").write_bytes(ck.read_bytes()[:1000])
    import onnx  # a whole, valid ONNX model where a checkpoint belongs
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(g), str(d / "model.onnx"))
    (d / "empty_dir").mkdir()
    (d / "empty.yml").write_text("")
    (d / "nomodel.yml").write_text("epochs: 3\n")
    (d / "bad.yml").write_text("model: [lenet5\n")
    (d / "unknown.yml").write_text("model: lenet5\nlearning_rate: 0.1\n")
    (d / "bad.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    (d / "a_file").write_text("x")
    junk = b"\x80\x81\xfe\xff\x00binary"  # not UTF-8 text
    for name in ("binary.yml", "binary.json"):
        (d / name).write_bytes(junk)
    (d / "trunc.json").write_text('{"MVAU_hls_0": {"PE": 4, "SI')
    (d / "trunc.yml").write_text("name: x\npoints: [a,\n")
    (d / "run_junk").mkdir()
    (d / "run_junk" / "params.yml").write_bytes(junk)
    (d / "run_broken").mkdir()
    (d / "run_broken" / "params.yml").write_text("model: [lenet5\n")
    (d / "build_junk").mkdir()
    (d / "build_junk" / "build_state.json").write_text('{"done": ["export", ')
    (d / "pkg_trunc" / "data").mkdir(parents=True)
    (d / "pkg_trunc" / "settings.json").write_text('{"driver_information": {"io_sh')
    np.save(d / "pkg_trunc" / "data" / "test_x.npy", np.zeros((4, 28, 28, 1), np.uint8))
    np.save(d / "pkg_trunc" / "data" / "test_y.npy", np.zeros(4, np.uint8))
    pkg = d / "pkg"  # a deployment package with the wrong image shape
    (pkg / "data").mkdir(parents=True)
    (pkg / "settings.json").write_text(json.dumps({"driver_information": {"io_shape_dict": {
        "ishape_normal": [[1, 28, 28, 1]], "idt": ["DataType['UINT8']"]}}}))
    np.save(pkg / "data" / "test_x.npy", np.zeros((4, 32, 32, 3), np.uint8))
    np.save(pkg / "data" / "test_y.npy", np.zeros(4, np.uint8))
    return d


T, H, S, D, Y = "training", "hw_build", "sim", "driver", "sweep"
# (command, arguments with {d} for the inputs folder and {o} for an output that must not appear, code, words)
CASES = [
    (T, "x --params configs/lenet5_binary.yml --lr nan --results {o}", 2, "lr: must be a finite number, got nan"),
    (T, "x --params configs/lenet5_binary.yml --lr inf --results {o}", 2, "lr: must be a finite number, got inf"),
    (T, "x --params configs/lenet5_binary.yml --lr -0.1 --results {o}", 2, "lr: must be positive, got -0.1"),
    (T, "x --params configs/lenet5_binary.yml --epochs 0 --results {o}", 2, "epochs: must be positive, got 0"),
    (T, "x --params configs/lenet5_binary.yml --test-limit -5 --results {o}", 2, "test_limit"),
    (T, "x --params configs/lenet5_binary.yml --batch-size 0 --results {o}", 2, "batch_size"),
    (T, "x --params configs/lenet5_binary.yml --width-scale 0 --results {o}", 2, "width_scale"),
    (T, "x --params configs/lenet5_binary.yml --distill-from {d}/missing --results {o}", 2, "missing"),
    (T, "x --params configs/lenet5_binary.yml --init-from {d}/missing --results {o}", 2,
     "missing not found; give the run folder or checkpoint to start from"),
    (T, "x --params {d}/missing.yml --results {o}", 2, "missing.yml"),
    (T, "x --params {d}/empty.yml --results {o}", 2, "empty.yml is empty"),
    (T, "x --params {d}/nomodel.yml --results {o}", 2, "nomodel.yml does not name its model"),
    (T, "x --params {d}/bad.yml --results {o}", 2, "bad.yml"),
    (T, "x --params {d}/unknown.yml --results {o}", 2, "learning_rate"),
    (T, "../../escape --params configs/lenet5_binary.yml --results {o}", 2, "run name '../../escape' becomes"),
    (T, "x --params configs/lenet5_binary.yml --results {d}/a_file/sub", 2,
     "a_file is a file, not a folder, so {d}/a_file/sub cannot be made; give --results"),
    (T, "x", 2, "--params"),
    (T, "--inference", 2, "--model-path"),
    (T, "--inference --model-path {d}/missing", 2, "missing"),
    (T, "--inference --model-path {d}/empty_dir", 2, "empty_dir"),
    (T, "--inference --model-path {d}/trunc.pt", 2, "trunc.pt"),
    (T, "--inference --model-path {d}/ok.pt --model vggnet7", 2, "--model"),
    (T, "--inference --model-path {d}/ok.pt --test-limit -5", 2, "test_limit"),
    (T, "--export {d}/trunc.pt", 2, "trunc.pt"),
    (T, "--resume {d}/empty_dir", 2, "empty_dir"),
    (T, "x --params configs/lenet5_binary.yml --epochs 1 --train-limit 200 --results /proc/x", 2, "--results"),
    (T, "--inference --model-path {d}/ok.pt --params configs/lenet5_binary.yml", 2, "--params"),
    (T, "--resume {d}/empty_dir --params configs/lenet5_binary.yml", 2, "--params"),
    (T, "--finish {d}/missing", 2, "missing"),
    (H, "--model {d}/missing --out {o}", 2, "missing"),
    (H, "--model {d}/empty_dir --out {o}", 2, "empty_dir"),
    (H, "--model {d}/trunc.pt --out {o}", 2, "trunc.pt"),
    (H, "--model {d}/model.onnx --out {o}", 2, "model.onnx is an ONNX model (a QONNX export), not a checkpoint"),
    (T, "--inference --model-path {d}/model.onnx", 2, "is an ONNX model (a QONNX export), not a checkpoint"),
    (H, "--model {d}/float.pt --out {o}", 2, "float.pt is a float model"),
    (H, "--model {d}/ok.pt --board Zedboard --out {o}", 2, "Zedboard"),
    (H, "--model {d}/ok.pt --target-fps 0 --out {o}", 2, "target-fps"),
    (H, "--model {d}/ok.pt --target-fps -5 --out {o}", 2, "target-fps"),
    (H, "--model {d}/ok.pt --max-utilization 0 --out {o}", 2, "max-utilization"),
    (H, "--model {d}/ok.pt --max-utilization 150 --out {o}", 2, "max-utilization"),
    (H, "--model {d}/ok.pt --max-utilization nan --out {o}", 2, "max-utilization"),
    (H, "--model {d}/ok.pt --clock-ns 0 --out {o}", 2, "clock-ns"),
    (H, "--model {d}/ok.pt --clock-ns nan --out {o}", 2, "clock-ns"),
    (H, "--model {d}/ok.pt --verify-images -2 --out {o}", 2, "verify-images"),
    (H, "--model {d}/ok.pt --mvau-wwidth-max 0 --out {o}", 2, "mvau-wwidth-max"),
    (H, "--model {d}/ok.pt --folding {d}/missing.json --out {o}", 2, "missing.json"),
    (H, "--model {d}/ok.pt --folding {d}/bad.json --out {o}", 2, "bad.json"),
    (H, "--model {d}/ok.pt --folding {d}/list.json --out {o}", 2, "list.json"),
    (H, "--model {d}/ok.pt --specialize {d}/missing.json --folding {d}/list.json --out {o}", 2,
     "folding file {d}/list.json holds a list"),
    (H, "--model {d}/ok.pt --stop-after synthesis --out {o}", 2, "synthesis"),
    (S, "--build {d}/missing", 2, "missing"),
    (S, "--build {d}/empty_dir", 2, "empty_dir"),
    (S, "--build {d}/empty_dir -n -5", 2, "-n takes N >= 0 images"),
    (S, "--build {d}/empty_dir --workers 0", 2, "--workers"),
    (S, "--build {d}/empty_dir --mode rtlsim --workers 2", 2, "--workers"),
    (S, "--build {d}/empty_dir --batch-size 0", 2, "--batch-size"),
    (S, "--build {d}/empty_dir --mode finn --batch-size 5", 2, "--batch-size"),
    (D, "--package {d}/missing", 2, "missing"),
    (D, "--package {d}/pkg --batch 0", 2, "--batch"),
    (D, "--package {d}/pkg -n -5", 2, "-n takes N >= 0 images"),
    (D, "--package {d}/pkg --timeout 0", 2, "--timeout must be a positive number of seconds, got 0.0"),
    (D, "--package {d}/pkg --backend sim", 2, "does not fit"),
    (D, "--package {d}/pkg --backend sim --batch 10", 2, "--batch"),
    (D, "--package {d}/pkg --sim-mode rtlsim", 2, "--sim-mode"),
    # files that are not what they claim: one reader (common.errors.read_user_file) for every file type
    (T, "x --params {d}/binary.yml", 2, "binary.yml is not UTF-8 text"),
    (T, "--resume {d}/run_junk", 2, "params.yml is not UTF-8 text"),
    (T, "--resume {d}/run_broken", 2, "params.yml is not valid YAML"),
    (H, "--model {d}/ok.pt --folding {d}/binary.json --out {o}", 2, "binary.json is not UTF-8 text"),
    (H, "--model {d}/ok.pt --folding {d}/trunc.json --out {o}", 2, "trunc.json is not valid JSON"),
    (H, "--model {d}/ok.pt --folding {d}/list.json --out {o}", 2, "holds a list"),
    (S, "--build {d}/build_junk", 2, "build_state.json is not valid JSON"),
    (D, "--package {d}/pkg_trunc --backend sim", 2, "settings.json is not valid JSON"),
    (Y, "{d}/binary.yml --out {o}", 2, "binary.yml is not UTF-8 text"),
    (Y, "{d}/trunc.yml --out {o}", 2, "trunc.yml is not valid YAML"),
    (H, "--model {d}/ok.pt --folding {d}/list.json --mvau-wwidth-max 64 --out {o}", 2, "--mvau-wwidth-max"),
]


def _main(cmd, monkeypatch):
    if cmd == D:
        monkeypatch.syspath_prepend(str(ROOT / "driver"))
        import infer
        return infer.main
    return importlib.import_module(f"{cmd}.__main__").main


@pytest.mark.parametrize("cmd,args,code,words", CASES,
                         ids=[f"{c}: {a.split(' --out')[0][:60]}" for c, a, _, _ in CASES])
def test_bad_input_gets_one_line_and_its_exit_code(cmd, args, code, words, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "must_not_exist"
    argv, words = args.format(d=inputs, o=out).split(), words.format(d=inputs, o=out)
    before = sorted(p.name for p in inputs.iterdir())
    rc = _main(cmd, monkeypatch)(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("error: ") and words in lines[-1], err
    assert "Traceback" not in err and len([x for x in lines if x.startswith("error")]) == 1
    assert not out.exists(), f"{out} was written"
    assert sorted(p.name for p in inputs.iterdir()) == before  # nothing written or lost beside the inputs


def test_a_process_shows_no_traceback_for_a_user_error(inputs):
    """The same contract through `python -m`, as a user runs it."""
    r = subprocess.run([sys.executable, "-m", "hw_build", "--model", str(inputs / "trunc.pt"), "--out",
                        str(inputs / "never")], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "BNN_DATA_DIR": str(DATA)})
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.strip().startswith("error: ")
    assert not (inputs / "never").exists()


def test_a_missing_tool_exits_3():
    from common.errors import cli
    from hw_build.finn_env import ToolMissing

    def main(argv):
        raise ToolMissing("step_hw_ipgen needs vitis_hls")
    assert cli(main) == 3


def test_a_bug_keeps_its_traceback():
    from common.errors import cli

    def main(argv):
        raise ZeroDivisionError("a real bug")
    with pytest.raises(ZeroDivisionError):
        cli(main)


@pytest.mark.parametrize("target, needle", [
    ("build", "error: no shipped model pretrained/foo/binary (MODEL=foo PRECISION=binary); there are: "
              "MODEL=lenet5 PRECISION=binary"),
    ("train", "error: no preset configs/foo_binary.yml (MODEL=foo PRECISION=binary); presets: lenet5_binary"),
])
def test_make_names_the_models_there_are_for_an_unknown_one(target, needle):
    r = subprocess.run(["make", "-s", target, "MODEL=foo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
