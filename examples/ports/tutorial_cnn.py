"""The PyTorch CNN of the teaching material, written by hand: a port of examples/pytorch_cnn.yaml.

Verify it against the spec (no Python glue needed):

    cnnspec verify examples/pytorch_cnn.yaml --torch-model examples/ports/tutorial_cnn.py:Net
"""

import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.drop1 = nn.Dropout2d(0.5)
        self.drop2 = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(64 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.drop1(F.max_pool2d(F.relu(self.conv1(x)), 2))
        x = self.drop2(F.max_pool2d(F.relu(self.conv2(x)), 2))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
