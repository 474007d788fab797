"""The stitched design checked before synthesis (bitstream builds only; needs Vivado's simulator).

FINN's own stitched-IP rtlsim verification (VerificationStepType.STITCHED_IP_RTLSIM, run inside its
step_create_stitched_ip) gets real test images and the Brevitas model's top-1 for them; step check_stitched_ip
reads FINN's per-image verdicts and stops the build before synthesis on a mismatch, naming the image.
FINN's measured rtlsim throughput (step_measure_rtlsim_performance) and its FIFO depths (step_set_fifo_depths)
are recorded in report/estimates.json beside the estimate, labelled simulated.
Not yet run with real Vivado: the file formats read here are those finn-plus 1.6.1's sources write.
"""
from __future__ import annotations

import json
import re
import shutil

import numpy as np

from common.files import write_json

from .build_folder import BuildFolder
from .errors import BuildError

STEP = "stitched_ip_rtlsim"  # FINN's name of the verification, in its output files
DEFAULT_IMAGES = 10


def stitched_images(verify_images: int) -> int:
    """Images FINN simulates on the stitched design: --verify-images N, 10 for the default (-1: the whole test
    set is for the fast python-mode checks), none with 0."""
    return DEFAULT_IMAGES if verify_images < 0 else verify_images


def write_io(folder: BuildFolder, images: np.ndarray, top1: np.ndarray) -> None:
    """FINN's verification input (the parent graph's NCHW pixels) and expected output (the top-1 index)."""
    folder.stitched_io.mkdir(parents=True, exist_ok=True)
    np.save(folder.stitched_io / "input.npy", images.astype(np.float32))
    np.save(folder.stitched_io / "expected_output.npy", top1.reshape(-1, 1).astype(np.float32))


def check(folder: BuildFolder) -> int:
    """FINN's verdict per image (verify_stitched_ip_rtlsim_<b>_<SUCCESS|FAIL>.npy); the number of images
    checked, or a BuildError naming the first image whose class differs from the Brevitas model's."""
    expected = np.load(folder.stitched_io / "expected_output.npy").reshape(-1)
    verdicts = {}
    for f in folder.finn_verification.glob(f"verify_{STEP}_*.npy"):
        m = re.fullmatch(rf"verify_{STEP}_(\d+)_(SUCCESS|FAIL)\.npy", f.name)
        if m:
            verdicts[int(m[1])] = (m[2], np.load(f).reshape(-1))
    missing = [b for b in range(len(expected)) if b not in verdicts]
    if missing:
        raise BuildError(f"FINN's stitched-IP rtlsim left no result for test images {missing[:10]} in "
                         f"{folder.finn_verification}: the simulation stopped early (a stall?); nothing was "
                         f"synthesized")
    failed = [b for b in sorted(verdicts) if verdicts[b][0] == "FAIL"]
    if failed:
        b = failed[0]
        raise BuildError(f"the stitched design (FINN's stitched-IP rtlsim) gives class {verdicts[b][1].tolist()} for "
                         f"test image {b}, the Brevitas model {int(expected[b])} ({len(failed)} of {len(expected)} "
                         f"images differ: {failed[:10]}); the stages before passed, so the difference appears in the "
                         f"stitched RTL (FIFOs, data-width converters, IP); nothing was synthesized")
    return len(expected)


def record(folder: BuildFolder) -> dict:
    """FINN's measured rtlsim performance and FIFO depths into report/estimates.json (labelled simulated)."""
    est = folder.estimates()
    perf, fifos = folder.finn_report / "rtlsim_performance.json", folder.finn_report / "fifo_sizing.json"
    if perf.is_file():
        runs = json.loads(perf.read_text())
        fps = [r["throughput_fps"] for r in runs if "throughput_fps" in r]
        est["rtlsim"] = {"kind": "simulated (FINN's stitched-IP rtlsim, Vivado xsim)", "results": runs,
                         "fps": min(fps) if fps else None}
    if fifos.is_file():  # FINN's final depths, also as a file --fifo-depths takes for the next build
        est["fifo_depths"] = json.loads(fifos.read_text()).get("fifo_depths", {})
        shutil.copyfile(fifos, folder.report / "fifo_depths.json")
    write_json(folder.estimates_file, est)
    return est
