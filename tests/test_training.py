import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_config

from training.train import Interrupted, train


@pytest.mark.needs_data
def test_short_real_training_beats_chance_by_far(tiny_run):
    # the lowest of 20 runs (seeds 0-4 x bf16/float32 x 1/2 threads: `python -m tools.floor_spread`, machine C,
    # docs/results.md): 79.0%; the floor leaves ~10 points for other machines' rounding, far above chance (10%)
    acc = float((tiny_run / "test_accuracy.txt").read_text().split()[0])
    assert acc > 70.0, f"two epochs on 3,000 MNIST images reached only {acc}%"
    for name in ("params.yml", "init.pt", "best.pt", "last.pt", "final.pt", "metrics.csv", "curves.png"):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader(open(tiny_run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[-1]["val_acc"]) > 70


@pytest.mark.needs_data
def test_precise_bn_gives_exact_training_set_statistics():
    from training.data import make_splits
    from training.finish import norm_layers, precise_bn
    from training.models import build_model
    cfg = tiny_config()
    x = make_splits("mnist", cfg.data_dir, 1000, 0, 2500).x_train  # 2,500 images: batches of 1000, 1000, 500
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    with torch.no_grad():  # a few momentum updates, as training leaves them
        for i in range(0, 300, 100):
            model(x[i:i + 100].float())
    first = norm_layers(model)[0]
    inputs = []
    hook = first.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    precise_bn(model, x, 1000, "cpu")
    hook.remove()
    # the cumulative average of per-batch statistics, each batch weighted equally (as torch's momentum=None)
    means = torch.stack([a.mean((0, 2, 3)) for a in inputs])
    varis = torch.stack([a.var((0, 2, 3), unbiased=True) for a in inputs])
    assert len(inputs) == 3 and not model.training
    assert torch.allclose(first.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(first.running_var, varis.mean(0), rtol=1e-4)
    assert first.momentum == 0.1


@pytest.mark.needs_data
def test_finish_keeps_the_better_validating_checkpoint(tiny_run):
    final = torch.load(tiny_run / "final.pt", weights_only=False)
    assert final["precise_bn"] and final["source"] in ("best.pt", "last.pt")
    note = (tiny_run / "test_accuracy.txt").read_text()
    assert f"final.pt = PreciseBN of {final['source']}" in note


def _sigterm_after_epoch(n):
    def log(msg):
        if msg.startswith(f"epoch {n}/"):
            os.kill(os.getpid(), signal.SIGTERM)
    return log


@pytest.mark.needs_data
def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = tiny_config(epochs=2, train_limit=1000, results=str(tmp_path / "a"), lr_schedule="cosine")
    straight = train(cfg, run_id="r", log=lambda *a: None)
    cfg_b = tiny_config(epochs=2, train_limit=1000, results=str(tmp_path / "b"), lr_schedule="cosine")
    with pytest.raises(Interrupted):
        train(cfg_b, run_id="r", log=_sigterm_after_epoch(1))
    run_b = next((tmp_path / "b" / "r").iterdir())
    assert (run_b / "interrupted.pt").is_file() and not (run_b / "test_accuracy.txt").exists()
    assert torch.load(run_b / "last.pt", weights_only=False)["epoch"] == 1
    train(cfg_b, resume=run_b, log=lambda *a: None)
    a = torch.load(straight / "last.pt", weights_only=False)
    b = torch.load(run_b / "last.pt", weights_only=False)
    assert b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["epoch"] for r in csv.DictReader(open(run_b / "metrics.csv"))] == ["1", "2"]


@pytest.mark.slow  # 29-31 s on 2 cores (make test-fast's list)
@pytest.mark.needs_data
def test_ternary_and_float_variants_train(tmp_path):
    # the lowest of 20 runs (seeds 0-4 x bf16/float32 x 1/2 threads: `python -m tools.floor_spread`, machine C,
    # docs/results.md): ternary 66.6%, float 94.8%; the floors leave ~10 points for other machines' rounding, far
    # above chance (10%)
    for floor, kw in ((55, dict(tern_weights="1111", tern_acts="0111")),
                      (90, dict(binarize=False, biases=True, layer_order="CBAP", loss="cross_entropy"))):
        run = train(tiny_config(epochs=2, results=str(tmp_path), **kw), run_id="v", log=lambda *a: None)
        assert float((run / "test_accuracy.txt").read_text().split()[0]) > floor, kw


@pytest.mark.needs_data
def test_torchrun_ddp_path_runs_with_world_size_1(tmp_path):
    from conftest import DATA, ROOT
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1"]
    r = subprocess.run(torchrun + ["-m", "training", "ddp", "--params", str(ROOT / "configs/lenet5_binary.yml"),
                                   "--epochs", "1", "--train-limit", "1000", "--test-limit", "200",
                                   "--width-scale", "0.25", "--results", str(tmp_path), "--data-dir", str(DATA)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    run = next((tmp_path / "ddp").iterdir())
    assert (run / "best.pt").is_file() and (run / "test_accuracy.txt").is_file()


@pytest.mark.needs_data
def test_finish_redoes_the_end_of_a_run_and_refuses_bad_use(tiny_run, tmp_path, capsys):
    from training.__main__ import main
    from training.config import ConfigError
    from training.finish import finish_run
    run = shutil.copytree(tiny_run, tmp_path / "copy")  # the session's run stays as it is for other tests
    (run / "final.pt").unlink()
    finish_run(run, log=lambda *a: None)
    assert (run / "final.pt").is_file()
    assert main(["--finish", str(run), "--lr", "0.1"]) == 2  # the run's own params only
    assert "error: --finish uses the run's own params.yml; drop lr" in capsys.readouterr().err
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "params.yml").write_text((tiny_run / "params.yml").read_text())
    with pytest.raises(ConfigError, match="no best.pt/last.pt"):
        finish_run(empty)


def test_budget_epochs_fit_the_time_left():
    from training.speed import budget_epochs
    # 600 s budget, 100 s spent, 2 s per epoch: (600 - 100 - 20 - 2.4) // 2 = 238 more
    assert budget_epochs(3, 2.0, 100.0, 600.0, 500) == 241
    assert budget_epochs(3, 2.0, 100.0, 600.0, 50) == 50  # never more than asked
    assert budget_epochs(3, 2.0, 700.0, 600.0, 50) == 3  # already over: stop after what is done


def test_a_slowly_drifting_plan_is_logged_once_it_has_moved_5_percent():
    from training.config import TrainConfig
    from training.speed import replan
    cfg, said, lines = TrainConfig(epochs=400, time_budget=1000.0), {}, []
    plans = []
    for done, per_epoch in enumerate([5.0, 5.05, 5.1, 5.15, 5.2, 5.25, 5.3], start=3):  # one epoch less each time
        replan(cfg, None, done, [per_epoch] * 3, done * per_epoch, 400, lines.append, said)
        plans.append(cfg.epochs)
    assert plans == sorted(plans, reverse=True) and plans[0] - plans[-1] >= 9  # the plan drifted ~5%...
    assert len(lines) == 2 and f"-> {plans[0]} epochs" in lines[0]  # ...said at first, then once it added up
    assert said["epochs"] == int(lines[1].split("-> ")[1].split()[0]) and abs(said["epochs"] - plans[0]) >= 9


@pytest.mark.needs_data
def test_time_budget_shortens_the_run_and_records_it(tmp_path):
    import yaml
    cfg = tiny_config(epochs=40, train_limit=500, time_budget=1.0, results=str(tmp_path), lr_schedule="cosine")
    run = train(cfg, run_id="b", log=lambda *a: None)
    params = yaml.safe_load((run / "params.yml").read_text())
    last = torch.load(run / "last.pt", weights_only=False)
    assert params["epochs"] == 3 and last["epoch"] == 3 and last["config"]["epochs"] == 3
    # over budget already: it stops where it is (3 of the 40 epochs' anneal), and says so in the checkpoint
    assert last["scheduler"]["progress"] == pytest.approx(3 / 40) and (run / "final.pt").is_file()


@pytest.mark.needs_data
def test_a_run_resumed_before_its_first_plan_keeps_to_the_budget(tmp_path):
    """Interrupted after epoch 2 of 40, before the budget first plans: the resumed run counts the seconds its
    first two epochs took (metrics.csv) and stops at the first plan, over budget, instead of running 40."""
    cfg = tiny_config(epochs=40, train_limit=500, time_budget=1.0, results=str(tmp_path), lr_schedule="cosine")
    with pytest.raises(Interrupted):
        train(cfg, run_id="r", log=_sigterm_after_epoch(2))
    run = next((tmp_path / "r").iterdir())
    said = []
    train(cfg, resume=run, log=said.append)
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 4  # epochs 3 and 4: two timed ones
    assert any(m.startswith("time budget 1 s:") and "-> 4 epochs (asked 40)" in m for m in said), said


def _lrs(sched, epochs: int, replans: dict | None = None) -> list:
    """The lr each epoch runs at; replans: {after epoch: epochs left}."""
    out = []
    for e in range(1, epochs + 1):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.step()
        if replans and e in replans:
            sched.replan(replans[e])
    return out


def test_replanned_cosine_is_cosine_annealing_until_replanned():
    from training.losses import ReplannedCosine
    opt = lambda: torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.003)  # noqa: E731
    ours, torchs = _lrs(ReplannedCosine(opt(), 40), 40), _lrs(torch.optim.lr_scheduler.CosineAnnealingLR(opt(), 40), 40)
    assert max(abs(a - b) for a, b in zip(ours, torchs)) < 1e-12


def test_replanned_cosine_stays_continuous_and_ends_annealed_when_the_plan_changes():
    from training.losses import ReplannedCosine
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.003)
    sched = ReplannedCosine(opt, 33)
    # planned 33 epochs at epoch 3 (a slow start), 80 from epoch 10 on (the other work ended), 70 at epoch 40
    lrs = _lrs(sched, 70, {10: 70, 40: 30})
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))  # never rises
    assert max(a - b for a, b in zip(lrs, lrs[1:])) < 0.003 * 0.06  # no jump: a cosine step of a 33-epoch plan
    assert sched.progress == 1.0 and lrs[-1] < 0.003 * 1e-3  # the last epoch runs at the anneal's tail


@pytest.mark.needs_data
@pytest.mark.slow  # over 30 s on 2 cores (make test's list)
def test_compiled_training_matches_eager_metrics_closely(tmp_path):
    """torch.compile of the training forward (what CUDA runs by default), on the CPU: same data order,
    same learning; float results differ only by fused rounding."""
    rows = {}
    for mode in ("off", "on"):
        run = train(tiny_config(epochs=1, train_limit=600, compile=mode, results=str(tmp_path / mode)),
                    run_id="c", log=lambda *a: None)
        rows[mode] = next(csv.DictReader(open(run / "metrics.csv")))
    # measured (fresh clone of 77f5d2e, machine C, bf16): train loss 1.43651 / 1.43681 (3e-4 apart), validation
    # accuracy 48.0 / 45.6% after one epoch on 600 images: the loss is the tight check; the accuracy of so short a
    # run moves by whole points when a few images flip (2.4 apart here), so it is only held far above chance
    assert abs(float(rows["on"]["train_loss"]) - float(rows["off"]["train_loss"])) < 0.01
    assert min(float(r["val_acc"]) for r in rows.values()) > 25


@pytest.mark.needs_data
@pytest.mark.slow  # over 30 s on 2 cores (machine B: make test's list)
def test_compiled_distillation_compiles_the_teacher_too(tiny_run, tmp_path, monkeypatch):
    """With compile on, the teacher's forward is compiled as well (the full-width VGGNet7 teacher under bf16,
    batch 100, 2 threads: 443-468 ms eager, 86-88 ms compiled, measured side by side on machine C); the
    distilled run learns as the eager one does."""
    compiled, real = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: compiled.append(m) or real(m, *a, **k))
    rows = {}
    for mode in ("off", "on"):
        run = train(tiny_config(epochs=1, train_limit=600, compile=mode, distill_from=str(tiny_run),
                                distill_weight=0.7, results=str(tmp_path / mode)), run_id="kd", log=lambda *a: None)
        rows[mode] = next(csv.DictReader(open(run / "metrics.csv")))
    assert len(compiled) == 2 and all(not p.requires_grad for p in compiled[1].parameters())  # student, teacher
    # measured (machine C, bf16, 2 threads): train loss 0.86296 eager / 0.85743 compiled, 5.5e-3 apart (fused
    # bf16 rounding in both nets; 3e-4 without a teacher): held within 0.03, far below a teacher gone wrong
    assert abs(float(rows["on"]["train_loss"]) - float(rows["off"]["train_loss"])) < 0.03


@pytest.mark.needs_data
def test_the_teacher_compiles_apart_from_the_student(tiny_run, tmp_path, monkeypatch):
    """teacher_compile on with compile off (what auto picks for a long fp32 VGGNet7 run on the CPU): the teacher's
    forward is compiled, the student's is not; teacher_compile off compiles neither."""
    from training.train import _start
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: compiled.append(m) or m)
    for mode in ("on", "off"):
        compiled.clear()
        s = _start(tiny_config(epochs=1, train_limit=200, compile="off", teacher_compile=mode,
                               distill_from=str(tiny_run), results=str(tmp_path / mode)), "t", None, lambda *a: None)
        assert s.net is s.model and compiled == ([s.teacher] if mode == "on" else [])
        assert s.teacher is not None and not s.teacher.training


@pytest.mark.needs_data
def test_long_inference_runs_compiled_with_the_eager_logits(tiny_run, monkeypatch):
    """predict: where the first batch says the rest would be long (a VGGNet7 on thousands of images: 2x faster,
    identical logits, measured on machine B), the other full batches run compiled, a short last batch eager (no
    second compile); where compiling fails, eager with a warning; short work never compiles."""
    from training import checkpoint
    from training.data import make_splits
    model = checkpoint.load(tiny_run)[0]
    x = make_splits("mnist", tiny_config().data_dir, test_limit=2500).x_test
    monkeypatch.setattr(checkpoint, "COMPILE_PAYS_S", float("inf"))
    eager = checkpoint.predict(model, x)
    compiled, real = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, *a, **k: compiled.append(m) or real(m, *a, **k))
    monkeypatch.setattr(checkpoint, "COMPILE_PAYS_S", 0.0)
    out = checkpoint.predict(model, x)
    assert compiled == [model] and out.shape == (2500, 10)
    assert torch.equal(out.argmax(1), eager.argmax(1)) and torch.allclose(out, eager, rtol=1e-5, atol=1e-5)

    def failing(m, *a, **k):
        def net(xb):
            raise RuntimeError("no C++ compiler")
        return net
    monkeypatch.setattr(torch, "compile", failing)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError: no C\+\+ compiler\); predicting eag"):
        assert torch.equal(checkpoint.predict(model, x), eager)
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled work that eager finishes sooner"))
    monkeypatch.setattr(checkpoint, "COMPILE_PAYS_S", 60.0)
    assert torch.equal(checkpoint.predict(model, x), eager)  # LeNet5: a few seconds eager


@pytest.mark.needs_data
def test_auto_precision_and_compile_resolve_per_machine_and_run(monkeypatch, tiny_run):
    """amp/compile 'auto': bf16 only where the CPU computes it natively, compile only where a run is long enough
    to earn its compile time back (and not for fp32 VGGNet7 on the CPU); params.yml records what ran."""
    import yaml

    from training import speed as t
    from training.config import TrainConfig
    cpu = torch.device("cpu")
    lenet, vgg = TrainConfig(epochs=40, batch_size=100), TrainConfig(model="vggnet7", dataset="cifar10", epochs=40)
    monkeypatch.setattr(t, "cpu_has_native_bf16", lambda: False)
    assert (t.resolve_speed(lenet, cpu, 50_000).amp, t.resolve_speed(lenet, cpu, 50_000).compile) == ("none", "on")
    assert t.resolve_speed(lenet, cpu, 3_000).compile == "off"  # 1,200 steps: compiling would not pay
    assert t.resolve_speed(vgg, cpu, 45_000).compile == "off"  # fp32 VGGNet7: measured no faster compiled
    assert t.resolve_speed(vgg, cpu, 45_000).teacher_compile == "on"  # its teacher's forward: 2.0x compiled
    assert t.resolve_speed(lenet, cpu, 3_000).teacher_compile == "off"
    monkeypatch.setattr(t, "cpu_has_native_bf16", lambda: True)
    assert (t.resolve_speed(vgg, cpu, 45_000).amp, t.resolve_speed(vgg, cpu, 45_000).compile) == ("bf16", "on")
    assert (t.resolve_speed(lenet, torch.device("cuda"), 100).amp,
            t.resolve_speed(lenet, torch.device("cuda"), 100).compile) == ("bf16", "on")
    fixed = TrainConfig(amp="none", compile="off", teacher_compile="off", epochs=40)
    assert t.resolve_speed(fixed, cpu, 50_000) == fixed  # what the user set stays
    params = yaml.safe_load((tiny_run / "params.yml").read_text())
    assert params["amp"] in ("none", "bf16") and params["compile"] == "off"


@pytest.mark.needs_data
def test_checkpoint_every_resumes_from_the_last_written_epoch(tmp_path):
    cfg = tiny_config(epochs=4, train_limit=500, checkpoint_every=2, results=str(tmp_path))
    with pytest.raises(Interrupted):
        train(cfg, run_id="k", log=_sigterm_after_epoch(3))
    run = next((tmp_path / "k").iterdir())
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 2
    train(cfg, resume=run, log=lambda *a: None)  # epoch 3 again (rows past last.pt dropped), then 4
    assert [r["epoch"] for r in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2", "3", "4"]


def test_distillation_loss_equals_a_hand_computation():
    from training.losses import distill_loss
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    T = 2.0
    want = 0.0
    for i in range(2):
        ps = [math.exp(v / T) for v in s[i].tolist()]
        pt = [math.exp(v / T) for v in t[i].tolist()]
        ps = [v / sum(ps) for v in ps]
        pt = [v / sum(pt) for v in pt]
        want += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    assert abs(distill_loss(s, t, T).item() - T * T * want / 2) < 1e-6
    assert distill_loss(t, t, T).item() < 1e-7


@pytest.mark.needs_data
def test_distillation_trains_from_a_teacher_and_refuses_another_dataset(tmp_path, tiny_run):
    from training.config import ConfigError
    run = train(tiny_config(epochs=1, train_limit=600, distill_from=str(tiny_run), distill_weight=0.7,
                            results=str(tmp_path)), run_id="kd", log=lambda *a: None)
    # one epoch on 600 images: it learned from teacher and labels (chance 10%)
    # the lowest of 20 runs (seeds 0-4 x bf16/float32 x 1/2 threads: `python -m tools.floor_spread`, machine C,
    # docs/results.md): 48.0%; the floor leaves ~13 points for other machines' rounding, far above chance (10%)
    assert float((run / "test_accuracy.txt").read_text().split()[0]) > 35
    import yaml
    assert yaml.safe_load((run / "params.yml").read_text())["distill_from"] == str(tiny_run)
    from training.publish import publish
    info = json.loads((publish(run, tmp_path / "pretrained", "here") / "info.json").read_text())
    assert info["teacher"] == str(tiny_run) and "started_from" not in info and info["epochs"] == 1
    assert info["test_acc"] == float((tmp_path / "pretrained/test_accuracy.txt").read_text())
    vgg_teacher = tmp_path / "vgg.pt"
    from training.models import build_model
    vcfg = tiny_config(model="vggnet7", dataset="cifar10", width_scale=0.0625, layer_order="CBAP")
    torch.save({"model": build_model(vcfg).state_dict(), "config": vcfg.to_dict()}, vgg_teacher)
    with pytest.raises(ConfigError, match="is a cifar10 model"):
        train(tiny_config(epochs=1, train_limit=300, distill_from=str(vgg_teacher), results=str(tmp_path)),
              run_id="kd2", log=lambda *a: None)
    with pytest.raises(ConfigError, match="distill_weight"):
        tiny_config(distill_weight=1.5)


def test_core_share_leaves_the_cores_other_work_holds(monkeypatch):
    """threads 0 on the CPU: the thread count follows the cores other work leaves free (and comes back)."""
    from training.speed import CoreShare
    monkeypatch.setattr(torch, "set_num_threads", lambda n: said.append(("threads", n)))
    said = []
    share = CoreShare(lambda msg: said.append(msg), first_look=0)
    assert share._mark is not None and len(share._mark) == 3  # this machine's /proc/stat reads
    share.cores, share.threads = [0, 1], 2
    samples = iter([(10.0, 20.0, 10.0),    # 10 s: 20 CPU-s busy, 10 of them ours: other work holds 1 core
                    (20.0, 40.0, 20.0),    # the same: no change
                    (30.0, 52.0, 30.0)])   # 12 busy, 10 ours: 0.2 cores of others -> both cores again
    share._mark = (0.0, 0.0, 0.0)
    share._sample = lambda: next(samples)
    monkeypatch.setattr("training.speed.time.monotonic", lambda: 1e9)
    for _ in range(3):
        share.update()
    assert said == ["other work is using 1.0 of the 2 cores: 1 training thread (was 2)", ("threads", 1),
                    "other work is using 0.2 of the 2 cores: 2 training threads (was 1)", ("threads", 2)]


def test_core_share_decides_before_the_first_work():
    """The first decision comes from a short look before any work: a busy process beside it stands for the
    other work (with pytest-xdist's other worker, more)."""
    import multiprocessing

    from training.speed import CoreShare
    before = torch.get_num_threads()
    busy = multiprocessing.get_context("spawn").Process(target=_spin, args=(4.0,))
    busy.start()
    try:
        time.sleep(1.0)  # the child's interpreter is up and spinning
        torch.set_num_threads(2)
        share = CoreShare(lambda msg: None, first_look=1.0)
        if len(share.cores) == 2:  # CI's machine class; with more cores one busy loop may leave enough free
            assert share.threads == 1
    finally:
        busy.join()
        torch.set_num_threads(before)


def _spin(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


@pytest.mark.needs_data
def test_teacher_cache_gives_what_the_teacher_gives_each_augmented_batch(tiny_run):
    """The cached outputs (one teacher pass per augmentation variant) are the teacher's on the very images a
    training step draws: indices and variants from the same draws, shifts rebuilt from the variant number."""
    from training.data import augment_variants, batches, make_splits
    from training.losses import TeacherCache, load_teacher
    cfg = tiny_config(amp="none", distill_from=str(tiny_run), augment=True, epochs=30)
    assert TeacherCache.pays(cfg) and not TeacherCache.pays(tiny_config(epochs=25, augment=True))
    assert augment_variants("mnist") == 25 and augment_variants("cifar10") == 162
    teacher = load_teacher(cfg, torch.device("cpu"))
    x, y = make_splits("mnist", cfg.data_dir, 0, 0, 600, 10).x_train[:300], torch.zeros(300, dtype=torch.long)
    said = []
    cache = TeacherCache(teacher, x, "mnist", cfg, torch.device("cpu"), said.append)
    assert said[0].startswith("teacher outputs for 25 augmentation variants of 300 images, computed once")
    seen = set()
    for xb, _, index, variant in batches(x, y, 100, True, torch.Generator().manual_seed(1), "mnist", True):
        with torch.no_grad():
            assert torch.allclose(cache(index, variant), teacher(xb).float(), atol=1e-4, rtol=1e-4)
        seen |= set(variant.tolist())
    assert len(seen) > 20  # the draws covered most of the 25 shifts


@pytest.mark.needs_data
def test_a_distilled_run_longer_than_the_variants_trains_from_the_cache(tmp_path, tiny_run):
    said = []
    run = train(tiny_config(epochs=26, train_limit=200, test_limit=100, val_size=100, augment=True,
                            distill_from=str(tiny_run), results=str(tmp_path)), run_id="kdc", log=said.append)
    assert any(m.startswith("teacher outputs for 25 augmentation variants of 200 images") for m in said)
    assert (run / "final.pt").is_file()


def test_a_presets_shipped_paths_are_found_from_any_working_directory(tmp_path, monkeypatch):
    """distill_from and init_from as presets write them (pretrained/...): found beside the working directory
    first, else in the checkout."""
    from common.paths import ROOT
    from training.checkpoint import init_from, load, preset_path
    from training.models import build_model
    monkeypatch.chdir(tmp_path)
    assert preset_path("pretrained/vggnet7/pynqz1") == ROOT / "pretrained/vggnet7/pynqz1"
    (tmp_path / "pretrained/vggnet7/pynqz1").mkdir(parents=True)
    assert preset_path("pretrained/vggnet7/pynqz1").resolve() == tmp_path / "pretrained/vggnet7/pynqz1"
    _, cfg, _ = load(ROOT / "pretrained/lenet5/binary_kd")
    n = len(build_model(cfg).state_dict())
    assert init_from(build_model(cfg), "pretrained/lenet5/binary_kd") == \
        f"initialised {n} of {n} tensors from pretrained/lenet5/binary_kd"


@pytest.mark.needs_data
def test_val_size_0_trains_on_every_training_image_and_publishes_last_pt(tmp_path):
    from training.data import make_splits
    from training.finish import finish_run
    from training.publish import publish
    assert len(make_splits("mnist", tiny_config().data_dir, 0).x_train) == 60000  # the study's split keeps 50,000
    run = train(tiny_config(epochs=2, val_size=0, results=str(tmp_path)), run_id="all", log=lambda *a: None)
    assert not (run / "best.pt").exists()  # nothing to choose on
    final = torch.load(run / "final.pt", weights_only=False)
    assert final["source"] == "last.pt" and final["precise_bn"] and final["val_acc"] is None
    assert "no validation split" in (run / "test_accuracy.txt").read_text()
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [(r["val_loss"], r["val_acc"]) for r in rows] == [("", "")] * 2 and (run / "curves.png").is_file()
    (run / "final.pt").unlink()
    finish_run(run, log=lambda *a: None)  # the end of the run again, without best.pt
    info = json.loads((publish(run, tmp_path / "pretrained", "here") / "info.json").read_text())
    assert info["val_acc"] is None and info["checkpoint"] == "last.pt" and info["test_acc"] > 50  # chance: 10%


def test_swa_update_is_the_running_mean_of_the_epochs_ends():
    from training.train import swa_update
    net, swa, seen = torch.nn.Linear(3, 2), None, []
    for k in range(4):
        with torch.no_grad():
            net.weight.fill_(float(k) + 0.1)
        seen.append(net.weight.detach().double().clone())
        swa = swa_update(swa, net)
    assert swa["n"] == 4 and torch.equal(swa["params"]["weight"], torch.stack(seen).mean(0))
    assert swa["params"]["weight"].dtype == torch.float64 and set(swa["params"]) == {"weight", "bias"}


@pytest.mark.needs_data
def test_weight_averaging_resumes_exactly_and_is_final_without_validation(tmp_path):
    from training.finish import swa_candidate
    kw = dict(epochs=3, swa_start=2, val_size=0, train_limit=1000, lr_schedule="none")
    straight = train(tiny_config(results=str(tmp_path / "a"), **kw), run_id="r", log=lambda *a: None)
    cfg_b = tiny_config(results=str(tmp_path / "b"), **kw)
    with pytest.raises(Interrupted):
        train(cfg_b, run_id="r", log=_sigterm_after_epoch(2))
    run_b = next((tmp_path / "b" / "r").iterdir())
    assert torch.load(run_b / "last.pt", weights_only=False)["swa"]["n"] == 1  # epoch 2 averaged
    train(cfg_b, resume=run_b, log=lambda *a: None)
    a, b = (torch.load(r / "last.pt", weights_only=False) for r in (straight, run_b))
    assert a["swa"]["n"] == b["swa"]["n"] == 2
    for k in a["swa"]["params"]:
        assert torch.equal(a["swa"]["params"][k], b["swa"]["params"][k]), k
    name, avg = swa_candidate(a)
    assert name == "the average of epochs 2-3"
    some = next(k for k in a["swa"]["params"] if k.endswith("layer.weight"))
    assert not torch.equal(avg["model"][some], a["model"][some])  # two different epochs' weights averaged
    final = torch.load(straight / "final.pt", weights_only=False)
    assert final["source"] == name and final["precise_bn"]
    note = (straight / "test_accuracy.txt").read_text().splitlines()
    assert note[1].startswith(f"# final.pt = PreciseBN of {name}: epoch 3, no validation split")
    assert note[2].startswith("# not chosen: PreciseBN of last.pt: epoch 3, no validation split, test ")


@pytest.mark.needs_data
def test_init_latent_from_gives_the_signs_their_old_magnitudes(tmp_path, tiny_run):
    from training.checkpoint import CheckpointError, init_from, init_latent_magnitudes
    from training.compact import save_compact
    from training.config import ConfigError
    from training.models import build_model
    cfg = tiny_config()
    ck = torch.load(tiny_run / "final.pt", weights_only=False)
    save_compact(ck, tmp_path / "model.npz")  # the shipped form: +-1 weights
    model = build_model(cfg)
    init_from(model, str(tmp_path / "model.npz"))
    flipped = {k: -v for k, v in ck["model"].items()}  # the other sign everywhere: only magnitudes may come over
    torch.save(dict(ck, model=flipped), tmp_path / "latent.pt")
    assert init_latent_magnitudes(model, str(tmp_path / "latent.pt")).startswith("latent magnitudes of 4 binary")
    for name, p in model.named_parameters():
        if name.endswith("layer.weight"):
            latent = ck["model"][name]
            assert torch.equal(p.sign(), torch.where(latent >= 0, 1.0, -1.0)), name  # the stored signs kept
            assert torch.allclose(p.abs(), latent.abs().clamp(1e-6, 1.0)), name
    with pytest.raises(CheckpointError, match="no tensor of the name and shape of this net's"):
        init_latent_magnitudes(model, str(tmp_path / "latent.pt"))  # no +-1 weights left to scale
    with pytest.raises(CheckpointError, match="init_latent_from: nowhere.pt not found"):
        init_latent_magnitudes(model, "nowhere.pt")
    with pytest.raises(ConfigError, match="init_latent_from: gives magnitudes to init_from's signs; set init_from"):
        tiny_config(init_latent_from=str(tmp_path / "latent.pt"))
    with pytest.raises(ConfigError, match=r"swa_start: must be 0 \(off\) or an epoch of the run \(1 to epochs = 1\)"):
        tiny_config(swa_start=3, epochs=1)
    with pytest.raises(ConfigError, match="swa_start: the average's batch-norm statistics are recomputed"):
        tiny_config(swa_start=1, precise_bn=False)


@pytest.mark.needs_data
def test_a_missing_init_latent_from_is_one_error_line_before_any_run_folder(tmp_path, tiny_run, capsys):
    from conftest import DATA, ROOT

    from training.__main__ import main
    rc = main(["x", "--params", str(ROOT / "configs/lenet5_binary.yml"), "--init-from", str(tiny_run),
               "--init-latent-from", str(tmp_path / "nowhere.pt"), "--epochs", "1", "--train-limit", "200",
               "--results", str(tmp_path / "out"), "--data-dir", str(DATA)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: init_latent_from: {tmp_path / 'nowhere.pt'} not found; give the checkpoint "
                               f"whose latent weights the signs were trained from (a run's .pt or run folder)"]
    assert not (tmp_path / "out" / "x").exists()


def test_final_is_the_best_validated_candidate_and_a_tie_goes_to_the_later_one():
    from training.finish import pick_final
    best, last, avg = ({"source": n, "val_acc": a} for n, a in (("best", 90.0), ("last", 91.0), ("avg", 91.0)))
    assert pick_final([best, last, avg], True) is avg
    assert pick_final([best, last], True) is last
    assert pick_final([{"source": "best", "val_acc": 92.0}, last], True)["source"] == "best"
    assert pick_final([best, last, avg], False) is avg


def test_publishing_over_the_model_a_run_started_from_names_the_model_it_replaces(tmp_path):
    import subprocess

    from training.publish import replaced
    dest = tmp_path / "pretrained/vggnet7/pynqz1"
    dest.mkdir(parents=True)
    (dest / "info.json").write_text(json.dumps({"test_acc": 84.34}))
    lines = {"teacher": str(tmp_path / "other"), "started_from": str(dest)}
    assert replaced(lines, dest) == {"teacher": str(tmp_path / "other"),
                                     "started_from": f"{dest} as it was before this model replaced it (test 84.34%)"}
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "shipped"], check=True)
    commit = subprocess.run(git[:3] + ["log", "-1", "--format=%h"], capture_output=True, text=True).stdout.strip()
    assert replaced(lines, dest)["started_from"].endswith(f"(test 84.34%, commit {commit})")
    assert replaced({"started_from": str(tmp_path / "other")}, dest) == {"started_from": str(tmp_path / "other")}
