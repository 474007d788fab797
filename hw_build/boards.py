"""The boards the flow targets: one table, the single source of each board's part and resources."""
from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def bram18(self) -> int:
        return 2 * self.bram36

    def capacity(self) -> dict:
        """In the units of FINN's estimate reports."""
        return {"LUT": self.lut, "BRAM_18K": self.bram18, "URAM": self.uram, "DSP": self.dsp}


BOARDS = {b.name: b for b in [
    Board("Pynq-Z1", "Pynq-Z1", "xc7z020clg400-1", 53_200, 106_400, 140, 0, 220),
    Board("Pynq-Z2", "Pynq-Z2", "xc7z020clg400-1", 53_200, 106_400, 140, 0, 220),
    Board("ZCU104", "ZCU104", "xczu7ev-ffvc1156-2-e", 230_400, 460_800, 312, 96, 1_728),
    Board("KV260", "KV260_SOM", "xck26-sfvc784-2LV-c", 117_120, 234_240, 144, 64, 1_248),
    Board("AUP-ZU3", "AUP-ZU3_8GB", "xczu3eg-sfvc784-2-e", 70_560, 141_120, 216, 0, 360,
          "the board FINN recommends for teaching"),
]}


class BoardError(ValueError):
    pass


def get_board(name: str) -> Board:
    for key, board in BOARDS.items():
        if key.lower() == name.lower():
            return board
    raise BoardError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
