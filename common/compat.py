"""Environment fixes needed before Brevitas runs. The one place they live.

finn-plus 1.6.1 pins brevitas==0.13.0, which calls ``Tensor.rename(None)`` on every
quant layer's input; torch 2.13 removed ``Tensor.rename``. Our tensors are never named,
so dropping names is the identity. brevitas 0.13.4 fixes this upstream, but finn-plus
pins 0.13.0 exactly.
"""
import warnings

import torch

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
warnings.filterwarnings("ignore", message=".*Named tensors.*")

if not hasattr(torch.Tensor, "rename"):
    def _rename(self, *names, **rename_map):
        if any(n is not None for n in names) or rename_map:
            raise NotImplementedError("named tensors are not available in this torch build")
        return self

    torch.Tensor.rename = _rename
