"""Where things are, relative to the checkout: the one definition of the repository's folders."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
FOLDING = CONFIGS / "folding"
BUILD = ROOT / "build"
DRIVER = ROOT / "driver"
DEPS = ROOT / "deps"
DATA = ROOT / "data"                    # `make data` downloads here
SHARED = ROOT.parent / "shared"         # beside the checkout on this project's machines: datasets, checkpoints
OFFLINE_DATASETS = SHARED / "datasets"
