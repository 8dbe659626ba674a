"""The tutorial CNN as nn.Sequential blocks, the way many ports are written: parts are named
features.0, features.4, classifier.0, ... instead of like the spec layers.

cnnspec matches them by order and type on its own; a name map says it explicitly:

    cnnspec verify examples/pytorch_cnn.yaml --torch-model examples/ports/tutorial_sequential.py:Net \
        --name-map examples/ports/tutorial_sequential_names.json
"""

from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.5),
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.5),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x))
