"""Checkpoint to FINN dataflow accelerator: runs the STEPS of steps.py on a HwConfig (config.py), writing
the build folder (build_folder.py) and verifying every stage that changes the graph's function on real
test images against the Brevitas model (verify.py). Like FINN's builder it can start at a later step
(--start-step) from the model saved after the step before, and build_state.json records the whole
configuration so that `--replay BUILD_DIR` builds it again.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ToolError, UserError
from common.faults import fault_point
from common.files import FULL_OR_READ_ONLY, logged, require_destination
from common.folder_lock import FolderLock

from . import finn_env
from .boards import Board, get_board
from .build_folder import BuildFolder
from .config import HwConfig, check_inputs, default_out  # noqa: F401  (HwConfig: callers import it from here)
from .errors import BuildError, DoesNotFit  # noqa: F401  (DoesNotFit: re-exported for callers)
from .finn_env import ToolMissing
from .steps import STEPS, TOOL_STEPS, Context, Step, make_finn_cfg, point_at, restore


def build(hw: HwConfig, log=print) -> Context:
    """Runs the flow; returns the context (estimates, verification, timings)."""
    from training.checkpoint import load

    hw.validate()
    board = get_board(hw.board)
    every = STEPS + (TOOL_STEPS if hw.bitstream else [])
    steps = select_steps(every, hw.start_step, hw.stop_after)
    model_t, train_cfg, src_ck = load(hw.checkpoint)
    if not train_cfg.binarize:
        raise BuildError(f"{src_ck} is a float model; FINN builds quantized nets (binarize: true)")
    folding, specialize = check_inputs(hw, train_cfg)
    folder = BuildFolder(Path(hw.out) if hw.out else default_out(hw, train_cfg))
    lock = FolderLock(folder.root, "build folder", markers=BUILD_MARKERS)
    lock.check_ours()  # before any work
    require_destination(folder.root, "build folder", "--out")
    record = _record(hw, folder, src_ck, folding, specialize)
    previous = _resume_from(folder, record, steps[0], every) if hw.start_step else None
    finn_env.setup(folder.finn_tmp, create=False)
    if hw.bitstream:
        _preflight(board, folder.root, hw)
    fresh = not folder.root.exists()  # inputs checked: now write
    try:
        with lock:
            if lock.took_over_from:
                log(f"{folder.root}: taking over from process {lock.took_over_from}, which ended without finishing")
            return _build(Plan(hw, board, steps, every, model_t, train_cfg, src_ck, folding, specialize, folder,
                               record, previous), log)
    finally:
        left = sorted(p.name for p in folder.root.iterdir()) if folder.root.is_dir() else None
        if fresh and left and set(left) <= {FolderLock.NAME, "build.log"}:
            shutil.rmtree(folder.root)  # refused before writing anything of the build: no folder left


BUILD_MARKERS = ("build_state.json",)


@dataclass
class Plan:
    """One build, decided before anything is written: its configuration, board, steps (this run's and the
    whole flow's), the trained model, its input files, the folder and what build_state.json records."""
    hw: HwConfig
    board: Board
    steps: list[Step]
    every: list[Step]
    model_t: object          # the Brevitas model
    train_cfg: object        # its training configuration
    src_ck: Path
    folding: Path | None
    specialize: Path | None
    folder: BuildFolder
    record: dict
    previous: Path | None    # --start-step: the model the earlier run saved after the step before

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.every]


def select_steps(every: list[Step], start: str | None, stop: str | None) -> list[Step]:
    names = [s.name for s in every]
    for flag, name in (("--start-step", start), ("--stop-after", stop)):
        if name and name not in names:
            raise BuildError(f"{flag} {name!r} is not a step of this build; steps: {', '.join(names)}"
                             + ("" if name not in [s.name for s in TOOL_STEPS] else " (add --bitstream)"))
    first = names.index(start) if start else 0
    last = names.index(stop) if stop else len(names) - 1
    if last < first:
        raise BuildError(f"--stop-after {stop} comes before --start-step {start}; steps: {', '.join(names)}")
    return every[first:last + 1]


def _record(hw: HwConfig, folder: BuildFolder, src_ck: Path, folding, specialize) -> dict:
    """What build_state.json records of the configuration: every HwConfig field, the folding and specialize
    files this build used and the hashes of its inputs (what --start-step compares, what --replay reads)."""
    config = hw.to_state()
    config.update(checkpoint=str(src_ck.resolve()), out=str(folder.root), start_step=None,
                  folding=str(Path(folding).resolve()) if folding else None,
                  specialize=str(Path(specialize).resolve()) if specialize else None)
    config["fifo_depths"] = str(Path(hw.fifo_depths).resolve()) if hw.fifo_depths else None
    hashes = {"checkpoint": folder.sha256(src_ck)}
    hashes.update({k: folder.sha256(p) for k, p in (("folding", folding), ("specialize", specialize),
                                                    ("fifo_depths", hw.fifo_depths)) if p})
    return {"config": config, "inputs_sha256": hashes}


def _resume_from(folder: BuildFolder, record: dict, first: Step, every: list[Step]) -> Path:
    """--start-step: the model the folder's build saved after the step before `first`, once the folder is
    known to hold that build (same inputs and configuration)."""
    names = [s.name for s in every]
    before = names[names.index(first.name) - 1] if names.index(first.name) else None
    state = folder.read_state()
    again = f"build from the start into {folder.root} (without --start-step)"
    if state is None:
        raise BuildError(f"--start-step {first.name}: {folder.root} holds no build to resume (no build_state.json); "
                         f"{again}")
    if before is None:
        raise BuildError(f"--start-step {first.name} is the first step: leave --start-step out")
    if "config" not in state:
        raise BuildError(f"--start-step {first.name}: the build in {folder.root} records no configuration (an older "
                         f"build); {again}")
    was = state["config"]
    changed = [f"{k}: {was.get(k)!r} -> {v!r}" for k, v in record["config"].items()
               if k not in HwConfig.RUN_ONLY + ("checkpoint",) and was.get(k) != v]  # its content: hashed
    changed += [f"{k} file changed since (SHA-256)" for k, v in record["inputs_sha256"].items()
                if state.get("inputs_sha256", {}).get(k) != v]
    if changed:
        raise BuildError(f"--start-step {first.name}: {folder.root} was built with another configuration "
                         f"({'; '.join(changed)}); resume it with its own (python -m hw_build --replay "
                         f"{folder.root} --start-step {first.name}), or {again}")
    if before not in state.get("done", []) or folder.last_stage(before) is None:
        raise BuildError(f"--start-step {first.name}: the build in {folder.root} has not run {before} "
                         f"(done: {', '.join(state.get('done', [])) or 'nothing'}); start at the step after its "
                         f"last one, or {again}")
    return folder.last_stage(before)


def _build(plan: Plan, log) -> Context:
    hw, board, folder, folding, specialize = plan.hw, plan.board, plan.folder, plan.folding, plan.specialize
    out = folder.root
    # a folding file is checked against the model at the folding step: until then a new build writes to a
    # staging folder beside --out, moved into it once the folding fits (or the build fails otherwise);
    # a resumed build (--start-step) continues in its own folder
    verifier = _verifier(hw, plan.train_cfg, plan.model_t, folder)  # test images read before anything is written
    staged = folding is not None and plan.previous is None and "folding" in [s.name for s in plan.steps]
    work = BuildFolder(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent)) if staged else folder
    if not staged:
        finn_env.ensure_build_dir()
    ctx = Context(hw, board, work, make_finn_cfg(hw, board, work, folding, specialize), plan.train_cfg, plan.model_t)
    # the build's own log, in the folder it writes: a staging folder's goes with it (or away, if refused)
    log = logged(log, lambda: ctx.folder.root / "build.log")
    log(f"python -m hw_build {' '.join(sys.argv[1:])}" if sys.argv[0].endswith("__main__.py") else
        f"build of {hw.checkpoint} for {hw.board}")
    log(f"building {plan.src_ck} for {board.name} ({board.part}) at {1000 / hw.clock_ns:.0f} MHz -> {out}")
    log("folding: " + (f"{folding}" if folding else f"automatic to {ctx.finn_cfg.target_fps} FPS")
        + (f"; RTL layers: {specialize}" + ("" if hw.specialize else " (the specialize config beside the folding)")
           if specialize else ""))
    ctx.verifier = verifier
    if verifier is not None:
        verifier.out_dir = work.verification
    work.intermediate.mkdir(exist_ok=True)
    ck_path = folder.checkpoint_copy(plan.src_ck.suffix)  # its own copy (.pt or .npz): sim and driver compare
    if plan.src_ck.resolve() != ck_path.resolve():
        shutil.copyfile(plan.src_ck, work.checkpoint_copy(plan.src_ck.suffix))
    state = _start_state(plan, ck_path, ctx.finn_cfg.target_fps)
    model, name = _resume(ctx, plan, log), None
    try:
        for step in plan.steps:
            name, t0, i = step.name, time.time(), plan.names.index(step.name)
            fault_point(f"build:{name}")
            model = step.fn(model, ctx)
            ctx.timings[name] = round(time.time() - t0, 2)
            model.save(str(work.stage(i, name)))
            state["done"].append(name)
            log(f"[{i + 1:2d}/{len(plan.every)}] {name:28s} {ctx.timings[name]:6.1f} s")
            if step.verify and ctx.verifier is not None:
                ctx.timings[f"verify_{name}"] = ctx.verifier.check(name, model, ctx.parent).seconds
            if work is not folder and name == "folding":
                work = _adopt(work, folder, ctx)
            if work is folder:  # recorded step by step: a killed build resumes from its last step
                folder.write_state({**state, "timings_s": {**state.get("timings_s", {}), **ctx.timings}})
    except BaseException as e:
        if work is not folder and name != "folding":  # what was computed before the failure is kept
            work = _adopt(work, folder, ctx)
        if isinstance(e, ToolError):  # a tool missing or failed: the report so far, and where to go on from
            state["stopped_at"] = name
            if work is folder:
                _report(ctx, folder, log)
            log(f"\nstopped at {name}: {e}")
        if isinstance(e, KeyboardInterrupt):
            state["stopped_at"] = name
            log(f"\ninterrupted in step {name}: {_continue_text(hw, out, name, work is folder, plan.every)}")
        full = _disk_error(e)
        if full is not None:  # a full disk, a quota or a file-size limit: the user's to fix, nothing lost
            state["stopped_at"] = name
            raise UserError(f"{name}: writing {full.filename or out} failed ({full.strerror}): free space on that "
                            f"disk (or raise its quota); {_continue_text(hw, out, name, work is folder, plan.every)}"
                            ) from None
        raise
    finally:
        if work is not folder:  # refused at the folding step: --out stays as it was
            shutil.rmtree(work.root, ignore_errors=True)
        else:
            state["timings_s"] = {**state.get("timings_s", {}), **ctx.timings}
            folder.write_state(state)
        if ctx.verifier is not None and ctx.verifier.results:
            log("\n" + ctx.verifier.summary())
    _report(ctx, folder, log)
    return ctx


def _disk_error(e: BaseException) -> OSError | None:
    """The OSError of a full disk (or quota, or file-size limit) behind `e`, however FINN or onnx wrapped it."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in FULL_OR_READ_ONLY:
            return e
        e = e.__cause__ or e.__context__
    return None


def _continue_text(hw, out: Path, name: str | None, kept: bool, every: list[Step]) -> str:
    """What continues an interrupted build, true at that moment: the steps before `name` are in `out`."""
    names = [s.name for s in every]
    if not kept or name is None or names.index(name) == 0:
        return f"nothing of this build was kept in {out}; start it again with the same command"
    return (f"the steps before it are kept in {out}; python -m hw_build --replay {out}"
            f"{' --bitstream' if hw.bitstream else ''} --start-step {name} continues from there")


def _verifier(hw, train_cfg, model_t, work: BuildFolder):
    if not hw.verify_images:
        return None
    from training.checkpoint import predict
    from training.data import make_splits

    from .verify import Verifier
    n = 0 if hw.verify_images < 0 else hw.verify_images
    s = make_splits(train_cfg.dataset, hw.data_dir or train_cfg.data_dir, test_limit=n, train_limit=1)
    logits = predict(model_t, s.x_test).double().numpy()
    return Verifier(s.x_test.numpy(), np.arange(len(s.x_test)), logits, work.verification)


def _start_state(plan: Plan, ck_path: Path, target_fps) -> dict:
    """build_state.json of this run: a resumed build keeps the earlier steps' record."""
    record, hw, names = plan.record, plan.hw, plan.names
    kept = plan.folder.read_state() if plan.previous is not None else None
    first = names.index(plan.steps[0].name)  # a step of the earlier run that this run does not have is dropped
    done = [n for n in (kept or {}).get("done", []) if n in names and names.index(n) < first]
    return {**record, "source_checkpoint": record["config"]["checkpoint"], "checkpoint": ck_path.name,
            "checkpoint_sha256": record["inputs_sha256"]["checkpoint"], "board": plan.board.name,
            "clock_ns": hw.clock_ns, "folding": record["config"]["folding"],
            "specialize": record["config"]["specialize"], "max_utilization_pct": hw.max_utilization,
            "target_fps": target_fps, "done": done,
            "timings_s": {k: v for k, v in (kept or {}).get("timings_s", {}).items()
                          if k.removeprefix("verify_") in done}}


def _resume(ctx: Context, plan: Plan, log):
    """--start-step: the saved model, and the Context fields earlier steps wrote, read back."""
    if plan.previous is None:
        return None
    for s in plan.every[:plan.names.index(plan.steps[0].name)]:
        if s.writes:
            restore(ctx, s.writes, s.name)
    log(f"resuming at {plan.steps[0].name} from {plan.previous}")
    return plan.folder.load_model(plan.previous, plan.folder.read_state())


def _report(ctx: Context, folder: BuildFolder, log) -> None:
    if ctx.estimates:
        from .estimates import summary
        text = summary(ctx.estimates, ctx.board)
        folder.summary_file.write_text(text + _timing_text(ctx.timings))
        log(text)
    log(_timing_text(ctx.timings))


def _preflight(board, out: Path, hw: HwConfig) -> None:
    """--bitstream: every prerequisite of the tool steps checked before the first step."""
    from .preflight import bitstream_problems
    from .steps import simulates
    problems = bitstream_problems(board, out, simulate=simulates(hw), size_fifos=hw.fifo_depths is None)
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
    ctx.folder = folder
    point_at(ctx.finn_cfg, folder)
    if ctx.verifier is not None:
        ctx.verifier.out_dir = folder.verification
    if ctx.parent is not None:
        for node in ctx.parent.get_nodes_by_op_type("StreamingDataflowPartition"):
            inst = getCustomOp(node)
            inst.set_nodeattr("model", inst.get_nodeattr("model").replace(str(stage.root), str(folder.root), 1))
        ctx.parent.save(str(folder.parent_model))
    return folder


def replay_config(build_dir: Path) -> HwConfig:
    """--replay: the configuration build_state.json recorded, to build it again."""
    folder = BuildFolder(build_dir)
    state = folder.read_state()
    if state is None:
        raise BuildError(f"--replay {build_dir}: no build_state.json there; give a build folder written by "
                         f"python -m hw_build")
    if "config" not in state:
        raise BuildError(f"--replay {build_dir}: its build_state.json records no configuration (an older build); "
                         f"build it again with python -m hw_build --checkpoint {state.get('source_checkpoint', '...')} "
                         f"--board {state.get('board', '...')} --out {build_dir}")
    hw = HwConfig.from_state(state["config"], folder.state_file)
    if not Path(hw.checkpoint).is_file() and "checkpoint" in state and folder.own_checkpoint(state).is_file():
        hw.checkpoint = folder.own_checkpoint(state)  # the source moved: the build folder's own copy
    return hw


def _timing_text(timings: dict) -> str:
    steps = {k: v for k, v in timings.items() if not k.startswith("verify_")}
    ver = sum(v for k, v in timings.items() if k.startswith("verify_"))
    return (f"time: {sum(steps.values()):.1f} s in FINN steps, {ver:.1f} s verifying, "
            f"{sum(steps.values()) + ver:.1f} s in all\n")
