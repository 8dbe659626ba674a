"""A WRONG hand port of examples/same_stride2.yaml: ``padding=1`` where the spec says 'same' at stride 2.

Keras/TensorFlow/ONNX 'same' pads 0 before and 1 after here; ``padding=1`` pads 1 on both sides,
which shifts every window of 'stem' by one pixel. ``cnnspec verify`` fails at 'stem' and says so:

    cnnspec verify examples/same_stride2.yaml --torch-model examples/ports/same_stride2_padding1.py:Net
"""

import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)  # the mistake
        self.down = nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=1)
        self.logits = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.down(x)
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, stride=2)
        ones = F.pad(x.new_ones(1, 1, *x.shape[2:]), (0, 1, 0, 1))
        x = F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, stride=1) / F.avg_pool2d(ones, 2, stride=1)
        x = x.mean(dim=(2, 3))
        return F.softmax(self.logits(x), dim=1)
