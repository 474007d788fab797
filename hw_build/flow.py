"""Checkpoint to FINN dataflow accelerator: runs the STEPS of steps.py on a HwConfig (config.py), writing
the build folder (build_folder.py) and verifying every stage that changes the graph's function on real
test images against the Brevitas model (verify.py).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import finn_env
from .boards import get_board
from .build_folder import BuildFolder
from .config import HwConfig, check_inputs, default_out  # noqa: F401  (HwConfig: callers import it from here)
from .errors import BuildError, DoesNotFit  # noqa: F401  (re-exported for callers)
from .finn_env import ToolMissing
from training.folder_lock import FolderLock
from .steps import STEPS, TOOL_STEPS, Context, make_finn_cfg


def build(hw: HwConfig, log=print) -> Context:
    """Runs the flow; returns the context (estimates, verification, timings)."""
    from training.checkpoint import load

    hw.validate()
    board = get_board(hw.board)
    steps = STEPS + (TOOL_STEPS if hw.bitstream else [])
    names = [n for n, _, _ in steps]
    if hw.stop_after:
        if hw.stop_after not in names:
            raise BuildError(f"--stop-after {hw.stop_after!r} is not a step; steps: {', '.join(names)}")
        steps = steps[:names.index(hw.stop_after) + 1]
    model_t, train_cfg, src_ck = load(hw.checkpoint)
    if not train_cfg.binarize:
        raise BuildError(f"{src_ck} is a float model; FINN builds quantized nets (binarize: true)")
    folding, specialize = check_inputs(hw, train_cfg)
    folder = BuildFolder(Path(hw.out) if hw.out else default_out(hw, train_cfg))
    finn_env.setup(folder.finn_tmp, create=False)
    if hw.bitstream:
        _preflight(board)
    fresh = not folder.root.exists()  # inputs checked: now write
    try:
        with FolderLock(folder.root, "build folder") as lock:
            if lock.took_over_from:
                log(f"{folder.root}: taking over from process {lock.took_over_from}, which ended without finishing")
            return _build(hw, board, steps, model_t, train_cfg, src_ck, folding, specialize, folder, log)
    finally:
        if fresh and folder.root.is_dir() and [p.name for p in folder.root.iterdir()] == [FolderLock.NAME]:
            (folder.root / FolderLock.NAME).unlink()  # refused before writing anything: no folder left
            folder.root.rmdir()


def _build(hw, board, steps, model_t, train_cfg, src_ck, folding, specialize, folder, log) -> Context:
    from training.checkpoint import predict
    from training.data import make_splits
    out = folder.root
    # a folding file is checked against the model at the folding step: until then the build writes to a
    # staging folder beside --out, moved into it once the folding fits (or the build fails otherwise)
    staged = folding is not None and "folding" in [n for n, _, _ in steps]
    work = BuildFolder(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent)) if staged else folder
    if not staged:
        finn_env.ensure_build_dir()
    ctx = Context(hw, board, work.root, make_finn_cfg(hw, board, work.root, folding, specialize), train_cfg, model_t)
    log(f"building {src_ck} for {board.name} ({board.part}) at {1000 / hw.clock_ns:.0f} MHz -> {out}")
    log("folding: " + (f"{folding}" if folding else f"automatic to {ctx.finn_cfg.target_fps} FPS")
        + (f"; RTL layers: {specialize}" + ("" if hw.specialize else " (the specialize config beside the folding)")
           if specialize else ""))

    if hw.verify_images:
        n = 0 if hw.verify_images < 0 else hw.verify_images
        s = make_splits(train_cfg.dataset, hw.data_dir or train_cfg.data_dir, test_limit=n, train_limit=1)
        logits = predict(model_t, s.x_test).double().numpy()
        from .verify import Verifier
        ctx.verifier = Verifier(s.x_test.numpy(), np.arange(len(s.x_test)), logits, work.verification)

    work.intermediate.mkdir(exist_ok=True)
    ck_path = folder.checkpoint_copy(src_ck.suffix)  # its own copy (.pt or .npz): sim and driver compare with it
    if src_ck.resolve() != ck_path.resolve():
        shutil.copyfile(src_ck, work.checkpoint_copy(src_ck.suffix))
    state = {"source_checkpoint": str(src_ck), "checkpoint": str(ck_path), "checkpoint_sha256": folder.sha256(src_ck),
             "board": board.name, "clock_ns": hw.clock_ns, "folding": str(folding) if folding else None,
             "specialize": str(specialize) if specialize else None, "max_utilization_pct": hw.max_utilization,
             "target_fps": ctx.finn_cfg.target_fps, "done": []}
    model, name = None, None
    try:
        for i, (name, fn, verify) in enumerate(steps):
            t0 = time.time()
            model = fn(model, ctx)
            ctx.timings[name] = round(time.time() - t0, 2)
            model.save(str(work.stage(i, name)))
            state["done"].append(name)
            log(f"[{i + 1:2d}/{len(steps)}] {name:28s} {ctx.timings[name]:6.1f} s")
            if verify and ctx.verifier is not None:
                r = ctx.verifier.check(name, model, ctx.parent)
                ctx.timings[f"verify_{name}"] = r.seconds
            if work is not folder and name == "folding":
                work = _adopt(work, folder, ctx)
    except ToolMissing as e:
        state["stopped_at"] = name
        log(f"\nstopped before {name}: {e}")
        raise
    except BaseException:
        if work is not folder and name != "folding":  # what was computed before the failure is kept
            work = _adopt(work, folder, ctx)
        raise
    finally:
        if work is not folder:  # refused at the folding step: --out stays as it was
            shutil.rmtree(work.root, ignore_errors=True)
        else:
            state["timings_s"] = ctx.timings
            folder.write_state(state)
        if ctx.verifier is not None and ctx.verifier.results:
            log("\n" + ctx.verifier.summary())
    if ctx.estimates:
        from .estimates import summary
        text = summary(ctx.estimates, ctx.board)
        (folder.report / "summary.txt").write_text(text + _timing_text(ctx.timings))
        log(text)
    log(_timing_text(ctx.timings))
    return ctx


def _preflight(board) -> None:
    """--bitstream: every prerequisite of the tool steps checked before the first step."""
    from .deps import bitstream_problems
    problems = bitstream_problems(board)
    if problems:
        raise ToolMissing(f"--bitstream for {board.name} needs what this machine lacks: "
                          + "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
                          + ". make deps fetches FINN's dependencies (python -m hw_build.deps --check "
                            f"{board.name} lists what is missing); nothing was built or written")


def _adopt(stage: BuildFolder, folder: BuildFolder, ctx: Context) -> BuildFolder:
    """Moves the staging folder's contents into the build folder (replacing what an earlier build left
    there under the same names) and points the context and the partition's model path at it."""
    from qonnx.custom_op.registry import getCustomOp
    for entry in stage.root.iterdir():
        target = folder.root / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        entry.replace(target)
    stage.root.rmdir()
    finn_env.ensure_build_dir()
    ctx.out, ctx.finn_cfg.output_dir = folder.root, str(folder.finn_out)
    if ctx.verifier is not None:
        ctx.verifier.out_dir = folder.verification
    if ctx.parent is not None:
        for node in ctx.parent.get_nodes_by_op_type("StreamingDataflowPartition"):
            inst = getCustomOp(node)
            inst.set_nodeattr("model", inst.get_nodeattr("model").replace(str(stage.root), str(folder.root), 1))
        ctx.parent.save(str(folder.parent_model))
    return folder


def _timing_text(timings: dict) -> str:
    steps = {k: v for k, v in timings.items() if not k.startswith("verify_")}
    ver = sum(v for k, v in timings.items() if k.startswith("verify_"))
    return (f"time: {sum(steps.values()):.1f} s in FINN steps, {ver:.1f} s verifying, "
            f"{sum(steps.values()) + ver:.1f} s in all\n")
