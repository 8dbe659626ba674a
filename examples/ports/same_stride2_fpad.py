"""A correct hand port of examples/same_stride2.yaml: 'same' at stride 2 pads 0 before and 1 after.

PyTorch's ``padding=`` is symmetric, so the asymmetric padding is done with ``F.pad`` in forward.

    cnnspec verify examples/same_stride2.yaml --torch-model examples/ports/same_stride2_fpad.py:Net
"""

import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, kernel_size=3, stride=2)
        self.down = nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=1)  # 'same' here pads 1 and 1
        self.logits = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem(F.pad(x, (0, 1, 0, 1))))
        x = self.down(x)
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, stride=2)
        # 'same' average pool at stride 1: pads 0 before and 1 after, and divides by the real cells only
        ones = F.pad(x.new_ones(1, 1, *x.shape[2:]), (0, 1, 0, 1))
        x = F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, stride=1) / F.avg_pool2d(ones, 2, stride=1)
        x = x.mean(dim=(2, 3))
        return F.softmax(self.logits(x), dim=1)
