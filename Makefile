# Binary/ternary neural networks from Brevitas training to FINN accelerators on PYNQ boards.
# `make help` lists the targets. Every target sets up .venv first when it is missing.

MODEL     ?= lenet5
PRECISION ?= binary
BOARD     ?= Pynq-Z1
MODE      ?= auto
N         ?= 1000
ID        ?= $(MODEL)_$(PRECISION)
PY        := .venv/bin/python
# pytest-xdist workers for make test: one per core, at most 4 (each holds torch and FINN, about 2 GB)
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
# Datasets: the offline copies beside the checkout when present, else ./data (filled by `make data`).
DATA_DIR  ?= $(if $(wildcard ../shared/datasets/mnist.npz),../shared/datasets,data)
export BNN_DATA_DIR := $(abspath $(DATA_DIR))
PRETRAINED = pretrained/$(MODEL)/$(PRECISION)
BUILD_DIR  = build/$(MODEL)_$(PRECISION)_$(BOARD)
# an unknown MODEL/PRECISION named with the ones there are (exit 2, as every command's bad input)
NEED_PRETRAINED = @test -d $(PRETRAINED) || { echo "error: no shipped model $(PRETRAINED) (MODEL=$(MODEL) \
	PRECISION=$(PRECISION)); there are: $$(cd pretrained && ls -d */* | sed 's|/| PRECISION=|; s|^|MODEL=|' | \
	paste -sd, -)" >&2; exit 2; }
NEED_PRESET = @test -f configs/$(MODEL)_$(PRECISION).yml || { echo "error: no preset configs/$(MODEL)_$(PRECISION).yml \
	(MODEL=$(MODEL) PRECISION=$(PRECISION)); presets: $$(cd configs && ls *.yml | sed 's|.yml||' | paste -sd, -)" >&2; \
	exit 2; }

.PHONY: help lint test-long testdata setup system data deps train test test-fast sweep study bench bench-sim bench-packing figures build bitstream sim infer export clean

help:
	@echo "make train MODEL=lenet5|vggnet7 PRECISION=binary|float|ternary|pynqz1|pynqz1_kd|binary_kd|binary_8bit_first_last"
	@echo "                                 [EPOCHS=N] [ID=name] (pynqz1: the half-width binary VGGNet7 for the xc7z020 boards,"
	@echo "                                 pynqz1_kd: trained on from its GPU run, distilled from the full-width one;"
	@echo "                                 binary_kd: LeNet5's distilled recipe on a 59-minute budget; binary_8bit_first_last:"
	@echo "                                 the same with 8-bit first/last layers, 99.50%)"
	@echo "make test                       the test suite (CI runs this) on TEST_WORKERS pytest-xdist workers (default: cores, at most 4)"
	@echo "make test-fast                  the suite without the tests marked slow (-m 'not slow')"
	@echo "make test-long                  the tests marked long (over 5 min each, e.g. the KV260 driver drift check)"
	@echo "make lint                       ruff (pyflakes, import order, line length 120, whitespace; pyproject.toml)"
	@echo "make data                       download MNIST and CIFAR-10 into ./data (torchvision)"
	@echo "make sweep [QUICK=1] [SPEC=lenet5] [CLUSTER=local:2|tcp://host:8786]   capacity sweep: accuracy vs LUT/FPS"
	@echo "                                 (make study is the same target)"
	@echo "make bench                      training images/s in fp32 and bf16, epoch times (with CUDA: GPU epoch time);"
	@echo "                                 STUDY_REPO=DIR: also side by side with the study's own code (one thread, batch 50)"
	@echo "make bench-sim                  simulation speed: the python mode on the whole test set next to Brevitas inference"
	@echo "                                 (builds LeNet5/Pynq-Z1 and VGGNet7/ZCU104 first when missing)"
	@echo "make bench-packing              weight-file writing: FINN's per-element hex packing next to the vectorized one"
	@echo "                                 (builds VGGNet7/ZCU104 to HW code first when missing)"
	@echo "make figures                    docs/img/*.png from the shipped model, a LeNet5 build and a sweep (tools/figures.py)"
	@echo "make build MODEL=lenet5 BOARD=Pynq-Z1      FINN build to HW code, verified stage by stage"
	@echo "make build MODEL=vggnet7 BOARD=ZCU104|KV260, or MODEL=vggnet7 PRECISION=pynqz1 BOARD=Pynq-Z1"
	@echo "make deps [BOARD=Pynq-Z1]       FINN's dependencies a BOARD build needs (finn-hlslib, nlohmann-json, its board"
	@echo "                                 files; the others reported), finn_xsi with Vivado sourced"
	@echo "                                 into deps/finn or \$$FINN_DEPS, pinned by finn-plus (needs GitHub)"
	@echo "make bitstream MODEL=lenet5 BOARD=Pynq-Z1  the same, on to bitfile + deployment package (Vivado; make deps first)"
	@echo "make sim MODEL=lenet5 BOARD=Pynq-Z1 [MODE=python|rtlsim|cppsim|auto] [N=1000]"
	@echo "make infer                      driver/infer.py on the simulator (on a board: see README)"
	@echo "make export MODEL=... PRECISION=...        QONNX beside the pretrained checkpoint (model.onnx)"
	@echo "data folder: $(BNN_DATA_DIR)"

setup: .venv/.pins.sha256

# Debian packages the tests and a bitstream build need (scripts/system_packages.sh: installs what is missing)
system:
	@bash scripts/system_packages.sh
.venv/.pins.sha256: requirements/deps.txt scripts/setup_env.sh pyproject.toml
	bash scripts/setup_env.sh

# the tests read the real datasets: ../shared/datasets when beside the checkout, else ./data, downloaded once
testdata: setup
	@test -f $(BNN_DATA_DIR)/mnist.npz -a -f $(BNN_DATA_DIR)/cifar10.npz || $(MAKE) data

data: setup
	$(PY) -c "from training.data import download; [print('ready:', download(n, 'data')) for n in ('mnist', 'cifar10')]"

train: setup
	$(NEED_PRESET)
	$(PY) -m training $(ID) --params configs/$(MODEL)_$(PRECISION).yml $(if $(EPOCHS),--epochs $(EPOCHS))

export: setup
	$(NEED_PRETRAINED)
	$(PY) -m training --export $(PRETRAINED)

test: setup system testdata
	$(PY) -m pytest -q -rs --durations=20 -m "not long" -n $(TEST_WORKERS) --dist loadgroup tests

test-long: setup system testdata
	$(PY) -m pytest -q -rs -m long -n $(TEST_WORKERS) --dist loadgroup tests

lint: setup
	$(PY) -m ruff check .

test-fast: setup system testdata
	$(PY) -m pytest -q -rs -m "not slow" -n $(TEST_WORKERS) --dist loadgroup tests

sweep study: setup
	$(PY) -m sweep configs/sweep/$(or $(SPEC),lenet5).yml $(if $(QUICK),--quick) $(if $(CLUSTER),--cluster $(CLUSTER))

bench: setup
	$(PY) -m tools.bench_train
	@if [ -n "$(STUDY_REPO)" ]; then $(PY) -m tools.bench_study --study-repo $(STUDY_REPO); \
	else echo "side by side with the study's code: make bench STUDY_REPO=<checkout of RWTH-IDS/efficient-binary-neural-networks>"; fi

# the benches' builds, made once when missing (a folder with a build_state.json is taken as it is)
BENCH_LENET5 = build/lenet5_binary_Pynq-Z1
BENCH_VGG = build/vggnet7_binary_ZCU104
$(BENCH_LENET5)/build_state.json: | setup
	$(PY) -m hw_build --checkpoint pretrained/lenet5/binary --board Pynq-Z1 --verify-images 0 --out $(BENCH_LENET5)
$(BENCH_VGG)/build_state.json: | setup
	$(PY) -m hw_build --checkpoint pretrained/vggnet7/binary --board ZCU104 --verify-images 0 \
	    --stop-after hw_codegen --out $(BENCH_VGG)

bench-sim: setup $(BENCH_LENET5)/build_state.json $(BENCH_VGG)/build_state.json
	$(PY) -m tools.bench_sim $(BENCH_LENET5) $(BENCH_VGG) --out build/bench_sim.json

bench-packing: setup $(BENCH_VGG)/build_state.json
	$(PY) -m tools.bench_packing $(BENCH_VGG) --out build/bench_packing.json

figures: setup
	$(PY) -m tools.figures

deps: setup
	$(PY) -m hw_build.deps --board $(BOARD)

build: setup
	$(NEED_PRETRAINED)
	$(PY) -m hw_build --checkpoint $(PRETRAINED) --board $(BOARD) --out $(BUILD_DIR)

bitstream: setup
	$(NEED_PRETRAINED)
	$(PY) -m hw_build --checkpoint $(PRETRAINED) --board $(BOARD) --out $(BUILD_DIR) --bitstream

sim: setup
	$(PY) -m sim --build $(BUILD_DIR) --mode $(MODE) -n $(N)

infer: setup
	$(PY) driver/infer.py --backend sim --package $(BUILD_DIR)/deploy -n $(N)

clean:
	rm -rf build results .pytest_cache
