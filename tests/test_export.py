import numpy as np
import pytest
import torch
from conftest import DATA

from training.checkpoint import CheckpointError, load, predict
from training.data import make_splits
from training.export import export_qonnx, qonnx_logits, to_cbap

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def images():
    return make_splits("mnist", DATA, train_limit=1, test_limit=64).x_test


def _with_negative_gammas(model):
    for blk in (model.block1, model.block2, model.block3):
        w = blk.norm.weight.data
        w[::3] = -w[::3].abs() - 0.1
    return model


def test_cbap_twin_of_cpba_net_is_exact_with_negative_gammas(tiny_run, images):
    model, cfg, _ = load(tiny_run)
    assert cfg.layer_order == "CPBA"
    model = _with_negative_gammas(model)
    twin = to_cbap(model)
    assert all(b.order == "CBAP" for b in (twin.block1, twin.block2))
    assert torch.equal(predict(model, images), predict(twin, images))


def test_exported_qonnx_predicts_exactly_as_brevitas(tiny_run, images, tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    model, cfg, _ = load(tiny_run)
    model = _with_negative_gammas(model)
    path = export_qonnx(model, cfg, tmp_path / "m.onnx")
    m = ModelWrapper(str(path))
    i, o = m.graph.input[0].name, m.graph.output[0].name
    ref = predict(model, images).numpy()
    got = np.concatenate([execute_onnx(m, {i: images[k:k + 1].float().numpy()})[o] for k in range(len(images))])
    assert np.abs(got - ref).max() < 1e-5
    assert (got.argmax(1) == ref.argmax(1)).all()
    # the check's batched copies (qonnx's ChangeBatchSize; 64 = 6 x 10 + 4) give the file's logits
    np.testing.assert_array_equal(qonnx_logits(path, images, batch=10), got)


def test_bad_checkpoints(tmp_path, tiny_run):
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load(tmp_path / "junk.pt")
    ck = torch.load(tiny_run / "best.pt", weights_only=False)
    ck["config"]["width_scale"] = 0.5
    torch.save(ck, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        load(tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="no final.pt, best.pt, model.npz"):
        load(tmp_path)


def test_export_command_checks_the_qonnx_with_qonnxs_executor(tiny_run, tmp_path, capsys, monkeypatch):
    """--export writes model.onnx and runs it through qonnx's executor on test images against Brevitas; an
    export that answers another class is refused with the count (stood in by a shifted executor)."""
    import shutil

    import qonnx.core.onnx_exec as qonnx_exec

    from training.__main__ import main
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)  # the session's fixture stays as it is
    args = ["--export", str(run), "--test-limit", "20", "--data-dir", str(DATA)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (run / "model.onnx").is_file()
    assert "qonnx's executor on 20 test images: top-1 as the Brevitas model on 20, max |dlogit|" in out
    real = qonnx_exec.execute_onnx
    monkeypatch.setattr(qonnx_exec, "execute_onnx",
                        lambda m, d: {k: np.roll(v, 1, axis=1) for k, v in real(m, d).items()})
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "gives another class than the Brevitas model on 20 of 20 test images" in err
