"""PyTorch models written the way their authors write them, whose ``forward`` computes with a
tensor's size in Python (torch.fx's symbolic trace stops there) or makes a squeeze-excite gate
broadcastable by hand.  Each follows a published source: the PyTorch "Neural Networks" tutorial,
timm's ``Conv2dSame``, moskomule/senet.pytorch's ``SELayer``, milesial/Pytorch-UNet's ``Up``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class TutorialNet(nn.Module):
    """The PyTorch tutorial's LeNet: the flatten size counted in a loop over ``x.size()[1:]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, self.num_flat_features(x))
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def num_flat_features(self, x):
        size = x.size()[1:]
        count = 1
        for s in size:
            count *= s
        return count


def same_padding(size, kernel, stride, dilation):
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """timm's TensorFlow-style 'same' convolution: the padding computed from the input's size."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)

    def forward(self, x):
        ih, iw = x.size()[-2:]
        pad_h = same_padding(ih, self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = same_padding(iw, self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class TfSameNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Conv2dSame(3, 8, 3, stride=2)
        self.bn = nn.BatchNorm2d(8)
        self.dw = Conv2dSame(8, 8, 5, stride=2, groups=8, bias=False)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.dw(F.silu(self.bn(self.stem(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SELayer(nn.Module):
    """senet.pytorch: ``b, c, _, _ = x.size()``, Linear layers, ``view(b, c, 1, 1)``, ``expand_as``."""

    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SENet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.se = SELayer(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.se(F.relu(self.conv(x)))
        return self.head(x.mean((2, 3)))


class UnsqueezeGate(nn.Module):
    """A gate made (C, 1, 1) with ``unsqueeze(-1)`` twice, added back as ``x + x * gate``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc1 = nn.Linear(16, 4)
        self.fc2 = nn.Linear(4, 16)

    def forward(self, x):
        x = self.conv(x)
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x + x * y.unsqueeze(-1).unsqueeze(-1)


class GateIntoConv(nn.Module):
    """A flat vector viewed as (C, 1, 1) and convolved: not a gate, an unflatten."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 16)
        self.mix = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        y = self.fc(self.conv(x).mean((2, 3)))
        return self.mix(y.view(-1, 16, 1, 1))


class Up(nn.Module):
    """Pytorch-UNet's up step: the skip's size difference padded in Python, unpacked from a shape."""

    def __init__(self, channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels // 2, 2, stride=2)
        self.conv = nn.Conv2d(channels, channels // 2, 3, padding=1)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        _, _, height, width = x2.shape
        diff_y, diff_x = height - x1.shape[2], width - x1.shape[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class UNetStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.inc = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, padding=1)
        self.up = Up(16)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x1 = F.relu(self.inc(x))
        x2 = F.relu(self.down(F.max_pool2d(x1, 2)))
        return self.out(self.up(x2, x1))


class ESPCN(nn.Module):
    """Sub-pixel super-resolution: the module in the head, the function in a second branch."""

    def __init__(self, factor=2):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.Tanh())
        self.sub_pixel = nn.Conv2d(16, factor * factor, 3, padding=1)
        self.shuffle = nn.PixelShuffle(factor)
        self.detail = nn.Conv2d(16, 4 * factor * factor, 3, padding=1)
        self.factor = factor

    def forward(self, x):
        features = self.features(x)
        coarse = self.shuffle(self.sub_pixel(features))
        detail = F.pixel_shuffle(self.detail(features), self.factor)
        return torch.cat([coarse, detail], 1)


class RealESRGANStem(nn.Module):
    """Real-ESRGAN's x2 model starts with F.pixel_unshuffle(x, downscale_factor=2); a second
    branch uses the module."""

    def __init__(self):
        super().__init__()
        self.conv_first = nn.Conv2d(12, 8, 3, 1, 1)
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv_detail = nn.Conv2d(12, 8, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x):
        feat = self.conv_first(F.pixel_unshuffle(x, downscale_factor=2))
        return self.lrelu(feat + self.conv_detail(self.unshuffle(x)))


class Focus(nn.Module):
    """YOLOv5's stem before v6.0 (ultralytics/yolov5 models/common.py): every second cell, at
    four offsets, stacked on the channels; then a conv, and an upsampled skip that joins it
    (which takes H a multiple of 4)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(12, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.SiLU())
        self.down = nn.Conv2d(8, 8, 3, 2, 1)
        self.up = nn.Upsample(None, 2, "nearest")

    def forward(self, x):
        x = self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))
        return torch.cat([self.up(self.down(x)), x], 1)


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class CifarBasicBlock(nn.Module):
    """akamaster/pytorch_resnet_cifar10's block with the option-A shortcut: every second cell,
    zero channels on both sides."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """The CIFAR ResNet (resnet20 with one block per stage), its head as published:
    ``F.avg_pool2d(out, out.size()[3])`` and ``out.view(out.size(0), -1)``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = CifarBasicBlock(8, 8)
        self.layer2 = CifarBasicBlock(8, 16, 2)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class UnevenChannelPad(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(F.pad(self.conv(x), (0, 0, 0, 0, 1, 3)))


class MeansInSteps(nn.Module):
    """tonylins/pytorch-mobilenet-v2's head: ``x.mean(3).mean(2)``."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU6(inplace=True))
        self.classifier = nn.Linear(8, 4)

    def forward(self, x):
        return self.classifier(self.features(x).mean(3).mean(2))


class SpatialGate(nn.Module):
    """CBAM's spatial attention as Jongchan/attention-module writes it: the channels' max and mean,
    each with the channel axis put back, then a 7x7 convolution and a sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAMNet(nn.Module):
    """The gate above, then the same pooling written with keepdim (and an unpacked max)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = SpatialGate()
        self.mix = nn.Conv2d(3, 1, 5, padding=2)

    def forward(self, x):
        x = self.gate(self.conv(x))
        mean = torch.mean(x, dim=1, keepdim=True)
        top, _ = torch.max(x, dim=1, keepdim=True)
        attention = torch.sigmoid(self.mix(torch.cat([mean, top, x.amax(1, keepdim=True)], dim=1)))
        return x * attention


class GhostModule(nn.Module):
    """GhostNet's module (huawei-noah): primary and cheap features concatenated, then cut to the
    output width with ``out[:, :oup, :, :]``."""

    def __init__(self, inp, oup, ratio=2):
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, 1, bias=False), nn.BatchNorm2d(init_channels), nn.ReLU()
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, init_channels, 3, 1, 1, groups=init_channels, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        return out[:, : self.oup, :, :]


class GhostNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.ghost = GhostModule(3, 15)
        self.head = nn.Conv2d(15, 4, 1)

    def forward(self, x):
        x = self.head(self.ghost(x))
        return x[..., 1:-1, 2:]  # a crop written with an ellipsis


class C2f(nn.Module):
    """YOLOv8's C2f (ultralytics): the pieces of a chunk made a list, extended, concatenated."""

    def __init__(self, c1, c2, n=2, split=False):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = nn.Sequential(nn.Conv2d(c1, 2 * self.c, 1, bias=False), nn.BatchNorm2d(2 * self.c), nn.SiLU())
        self.cv2 = nn.Sequential(nn.Conv2d((2 + n) * self.c, c2, 1, bias=False), nn.BatchNorm2d(c2), nn.SiLU())
        self.m = nn.ModuleList(nn.Conv2d(self.c, self.c, 3, padding=1) for _ in range(n))
        self.split = split

    def forward(self, x):
        if self.split:
            y = list(self.cv1(x).split((self.c, self.c), 1))
        else:
            y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class UnevenSplit(nn.Module):
    """``torch.split`` by a width that leaves a narrower last piece, and by sections."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        a, b, c = torch.split(x, 4, dim=1)  # 4, 4, 2 channels
        d, e = x.split([7, 3], 1)
        return torch.cat([c * b[:, :2], a + d[:, 3:], e], 1)


class EcaLayer(nn.Module):
    """ECA-Net's eca_layer (BangguWu/ECANet, eca_module.py) after a conv, as published."""

    def __init__(self, channels=24, k_size=3):
        super().__init__()
        self.conv0 = nn.Conv2d(3, channels, 3, padding=1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        x = self.conv0(x)
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        y = self.sigmoid(y)
        return x * y.expand_as(x)


class TimmEca(nn.Module):
    """timm's EcaModule (layers/eca.py): the kernel size from the channels, a flat mean viewed
    as (N, 1, C), the gate applied before the view back."""

    def __init__(self, channels=64, gamma=2, beta=1):
        super().__init__()
        self.conv0 = nn.Conv2d(3, channels, 3, padding=1)
        t = int(abs(math.log(channels, 2) + beta) / gamma)
        kernel_size = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        x = torch.relu(self.conv0(x))
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)
        y = self.conv(y)
        y = self.gate(y).view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


class PermuteEca(nn.Module):
    """ECA spelled with permute and a biased Conv1d of 5 taps."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.eca = nn.Conv1d(1, 1, 5, padding=2)

    def forward(self, x):
        x = self.conv0(x)
        y = self.pool(x).squeeze(-1).permute(0, 2, 1)
        y = self.eca(y).permute(0, 2, 1).unsqueeze(-1).sigmoid()
        return x * y


class AuxHeadNet(nn.Module):
    """GoogLeNet's / Inception v3's pattern: an auxiliary classifier called only in training."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.aux = nn.Sequential(nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 8 * 8, num_classes))
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        aux = self.aux(x) if self.training else None
        x = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return (x, aux) if self.training else x


def pad_same(x, kernel_size, stride, dilation=(1, 1)):
    ih, iw = x.size()[-2:]
    pad_h = same_padding(ih, kernel_size[0], stride[0], dilation[0])
    pad_w = same_padding(iw, kernel_size[1], stride[1], dilation[1])
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class TimmConv2dSame(nn.Conv2d):
    """timm's Conv2dSame as timm writes it: conv2d_same pads by the *weight's* shape."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding=0, **kwargs)

    def forward(self, x):
        x = pad_same(x, self.weight.shape[-2:], self.stride, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


class TfEfficientStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_stem = TimmConv2dSame(3, 8, 3, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.conv_dw = TimmConv2dSame(8, 8, 5, stride=2, groups=8, bias=False)

    def forward(self, x):
        return self.conv_dw(F.silu(self.bn(self.conv_stem(x))))


class BranchSum(nn.Module):
    """MobileOne's / FastViT's reparameterisable block: ``out = 0`` and each branch added to it;
    ``1 - g`` and ``3 + x`` with the number first."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1) for _ in range(3))
        self.scale = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        out = 0
        for branch in self.branches:
            out += branch(x)
        gate = torch.sigmoid(self.scale(x))
        return (1 - gate) * out + (3 + x)


class SpaceToDepth(nn.Module):
    """TResNet's stem (timm layers/space_to_depth.py): TensorFlow's block order, by view and permute."""

    def __init__(self, block_size=4):
        super().__init__()
        self.bs = block_size

    def forward(self, x):
        N, C, H, W = x.size()
        x = x.view(N, C, H // self.bs, self.bs, W // self.bs, self.bs)
        x = x.permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(N, C * self.bs * self.bs, H // self.bs, W // self.bs)


class HandShuffleNet(nn.Module):
    """A space-to-depth stem and a hand-written pixel shuffle (PyTorch's order) back up."""

    def __init__(self):
        super().__init__()
        self.s2d = SpaceToDepth(2)
        self.conv = nn.Conv2d(12, 16, 3, padding=1)

    def forward(self, x):
        x = self.conv(self.s2d(x))
        n, c, h, w = x.shape
        x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(n, c // 4, h * 2, w * 2)


class FixedPoolHead(nn.Module):
    """AlexNet's head: AdaptiveAvgPool2d to a fixed size before flatten and Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.avgpool = nn.AdaptiveAvgPool2d((10, 10))
        self.fc = nn.Linear(4 * 10 * 10, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(F.relu(self.conv(x))), 1))


class AutoEncoder(nn.Module):
    """A convolutional autoencoder: Linear bottleneck, then ``view(-1, C, H, W)`` into the decoder."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 6)
        )
        self.fc = nn.Linear(6, 8 * 4 * 4)
        self.up = nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1)

    def forward(self, x):
        x = torch.relu(self.fc(self.encoder(x))).view(-1, 8, 4, 4)
        return torch.sigmoid(self.up(x))


class KerasOrderDecoder(AutoEncoder):
    """The vector read in Keras' order: ``view(n, H, W, C).permute(0, 3, 1, 2)``."""

    def forward(self, x):
        x = torch.relu(self.fc(self.encoder(x)))
        x = x.view(x.size(0), 4, 4, 8).permute(0, 3, 1, 2)
        return torch.sigmoid(self.up(x))
