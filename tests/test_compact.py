"""The compact checkpoint format (training/compact.py): bits for binary weights, round trip, export."""
import numpy as np
import pytest
import torch
from conftest import DATA, ROOT

from training.checkpoint import CheckpointError, load, predict, read_checkpoint
from training.compact import load_compact, save_compact
from training.data import make_splits
from training.export import export_qonnx

pytestmark = pytest.mark.needs_data


def _quantized(state, kinds):
    """Latent weights as their quantizers see them: sign for binary (0 -> +1), rounding for ternary."""
    out = {}
    for k, v in state.items():
        if kinds.get(k) == "binary":
            out[k] = torch.where(v >= 0, 1.0, -1.0)
        elif kinds.get(k) == "ternary":
            out[k] = torch.clamp(torch.round(v), -1, 1)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("variant", [{}, {"tern_weights": "1001", "tern_acts": "0110"}, {"first_layer_8bit": True}])
def test_round_trip_is_bit_exact_at_the_quantized_values(tmp_path, tiny_run, variant):
    from training.compact import weight_kinds
    ck = read_checkpoint(tiny_run / "final.pt")
    ck["config"] = dict(ck["config"], **variant)
    if variant:  # fresh weights of that variant, with latent values across [-1, 1] and exact zeros
        from training.config import TrainConfig
        from training.models import build_model
        torch.manual_seed(1)
        model = build_model(TrainConfig(**ck["config"]))
        ck["model"] = model.state_dict()
        ck["model"]["block1.layer.weight"].view(-1)[:5] = 0.0
    save_compact(ck, tmp_path / "m.npz")
    back = load_compact(tmp_path / "m.npz")
    kinds = weight_kinds(ck["config"])
    want = _quantized(ck["model"], kinds)
    assert back["model"].keys() == want.keys()
    for k in want:
        assert back["model"][k].dtype == want[k].dtype and torch.equal(back["model"][k], want[k]), k
    assert {k: back[k] for k in ("epoch", "val_acc", "source", "precise_bn")} == \
           {k: ck[k] for k in ("epoch", "val_acc", "source", "precise_bn")}
    assert "binary" in kinds.values()


def test_compact_model_computes_what_the_latent_one_does(tmp_path, tiny_run):
    save_compact(read_checkpoint(tiny_run / "final.pt"), tmp_path / "m.npz")
    latent, _, _ = load(tiny_run / "final.pt")
    compact, _, _ = load(tmp_path / "m.npz")
    x = make_splits("mnist", DATA, 1000, 0, 1, 500).x_test
    assert torch.equal(predict(latent, x), predict(compact, x))


def test_export_of_compact_equals_export_of_latent(tmp_path, tiny_run):
    """Same graph and, wherever a quantizer reads a weight, the same quantized weight; same outputs."""
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    save_compact(read_checkpoint(tiny_run / "final.pt"), tmp_path / "m.npz")
    paths = []
    for name, src in (("latent", tiny_run / "final.pt"), ("compact", tmp_path / "m.npz")):
        model, cfg, _ = load(src)
        paths.append(export_qonnx(model, cfg, tmp_path / f"{name}.onnx"))
    a, b = (ModelWrapper(str(p)) for p in paths)
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    quantized = {n.input[0] for n in a.graph.node if n.op_type == "BipolarQuant"}
    for init in a.graph.initializer:
        x, y = a.get_initializer(init.name), b.get_initializer(init.name)
        if init.name in quantized:
            assert np.array_equal(np.where(x >= 0, 1, -1), np.where(y >= 0, 1, -1)), init.name
        else:
            assert np.array_equal(x, y), init.name
    imgs = make_splits("mnist", DATA, 1000, 0, 1, 20).x_test.float().numpy()
    i, o = a.graph.input[0].name, a.graph.output[0].name
    for k in range(len(imgs)):
        assert np.array_equal(execute_onnx(a, {i: imgs[k:k + 1]})[o], execute_onnx(b, {i: imgs[k:k + 1]})[o])
    assert onnx.load(str(paths[1])).graph.initializer  # weights inside the file
    assert not any(p.with_name(p.name + ".data").exists() for p in paths)  # and no orphan copy beside it


def test_shipped_models_are_compact_and_small():
    files = sorted((ROOT / "pretrained").glob("*/*/model.npz"))
    assert files and not list((ROOT / "pretrained").glob("*/*/model.pt"))
    for f in files:
        ck = load_compact(f)
        limit = 4_000_000 if not ck["config"]["binarize"] else 2_000_000
        assert f.stat().st_size < limit, f


def test_damaged_compact_checkpoints_are_named(tmp_path, tiny_run):
    (tmp_path / "junk.npz").write_bytes(b"PK not a zip")
    with pytest.raises(CheckpointError, match="junk.npz cannot be read"):
        load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a compact checkpoint"):
        load(tmp_path / "other.npz")
    save_compact(read_checkpoint(tiny_run / "final.pt"), tmp_path / "m.npz")
    raw = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="cut.npz cannot be read"):
        load(tmp_path / "cut.npz")
