"""The boards the flow targets: one table, the single source of each board's part and resources."""
from __future__ import annotations

from dataclasses import dataclass

from common.errors import UserError


@dataclass(frozen=True)
class Board:
    name: str          # our name, as users type it
    finn_board: str    # FINN's board name (finn.util.basic.pynq_part_map key)
    part: str
    lut: int
    ff: int
    bram36: int
    uram: int
    dsp: int
    note: str = ""
    board_files: str | None = None  # the entry of finn-plus's external_dependencies.yaml with its board files
                                    # (None: Vivado ships them)

    @property
    def family(self) -> str:
        """The device family as Vivado's installer names it (what to add when the part is missing)."""
        return "Zynq-7000" if self.part.startswith("xc7z") else "Zynq UltraScale+ MPSoC"

    @property
    def bram18(self) -> int:
        return 2 * self.bram36

    def capacity(self) -> dict:
        """In the units of FINN's estimate reports."""
        return {"LUT": self.lut, "BRAM_18K": self.bram18, "URAM": self.uram, "DSP": self.dsp}

    @property
    def shell(self) -> dict:
        return SHELL_ALLOWANCE


# What a board design adds around FINN's accelerator (Zynq PS, AXI interconnect, the two IODMAs, clocking,
# resets), in the units of FINN's estimates. Published anchor, CNV-w1a1 on the Pynq-Z1 with FINN's
# ZynqBuild: the whole design 26.1k LUT and 124 BRAM36 (finn-examples' published Pynq-Z1 build) against
# 21,135 LUT and 98 BRAM36 + 9 BRAM18 for the accelerator alone after synthesis, "excluding shell"
# (FINN pull request #209, Xilinx/finn, 2020). The difference, 5.0k LUT and 43 BRAM18, is the allowance.
# No UltraScale+ anchor was found; the Zynq UltraScale+ boards take the same numbers.
SHELL_ALLOWANCE = {"LUT": 5_000, "BRAM_18K": 43, "URAM": 0, "DSP": 0}
SHELL_SOURCE = ("shell allowance: finn-examples' Pynq-Z1 CNV-w1a1 (26.1k LUT, 124 BRAM36, whole design) minus "
                "the same network's accelerator alone after synthesis (21.1k LUT, 98 BRAM36 + 9 BRAM18; FINN PR #209)")


BOARDS = {b.name: b for b in [
    Board("Pynq-Z1", "Pynq-Z1", "xc7z020clg400-1", 53_200, 106_400, 140, 0, 220, board_files="pynq-z1"),
    Board("Pynq-Z2", "Pynq-Z2", "xc7z020clg400-1", 53_200, 106_400, 140, 0, 220, board_files="pynq-z2"),
    Board("ZCU104", "ZCU104", "xczu7ev-ffvc1156-2-e", 230_400, 460_800, 312, 96, 1_728),
    Board("KV260", "KV260_SOM", "xck26-sfvc784-2LV-c", 117_120, 234_240, 144, 64, 1_248, board_files="kv260-som-bdf"),
    Board("AUP-ZU3", "AUP-ZU3_8GB", "xczu3eg-sfvc784-2-e", 70_560, 141_120, 216, 0, 360,
          "the board FINN recommends for teaching", board_files="aupzu3-8gb-bdf"),
]}


class BoardError(UserError, ValueError):
    pass


def get_board(name: str) -> Board:
    for key, board in BOARDS.items():
        if key.lower() == name.lower():
            return board
    raise BoardError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
