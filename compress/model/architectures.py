"""Sample architectures shipped with compress, in a registry keyed by short name.

Both are ordinary Paddle models; nothing in them knows about compress. The ResNet
has no DropPath of its own (compress wraps its blocks); the ViT carries a
timm-style ``DropPath`` layer in each block (compress drives it).
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class DropPath(nn.Layer):
    """timm-style stochastic depth on a residual branch (per sample)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        mask = paddle.floor(keep + paddle.rand(shape, dtype=x.dtype))
        return x / keep * mask


# --------------------------------------------------------------------------- ResNet
class PreActBlock(nn.Layer):
    """Pre-activation residual block: y = x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2D(channels)
        self.conv1 = nn.Conv2D(channels, channels, 3, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(channels)
        self.conv2 = nn.Conv2D(channels, channels, 3, padding=1, bias_attr=False)

    def forward(self, x):
        h = self.conv1(F.relu(self.bn1(x)))
        h = self.conv2(F.relu(self.bn2(h)))
        return x + h


class Downsample(nn.Layer):
    """Stride-2 transition between stages; changes shape, so never removable."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn = nn.BatchNorm2D(cin)
        self.conv = nn.Conv2D(cin, cout, 3, stride=2, padding=1, bias_attr=False)

    def forward(self, x):
        return self.conv(F.relu(self.bn(x)))


class ResNet(nn.Layer):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, widths=(16, 32), depths=(4, 4)):
        super().__init__()
        self.stem = nn.Conv2D(in_chans, widths[0], 3, padding=1, bias_attr=False)
        stages = []
        for i, (w, d) in enumerate(zip(widths, depths)):
            layers = [Downsample(widths[i - 1], w)] if i > 0 else []
            layers += [PreActBlock(w) for _ in range(d)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.LayerList(stages)
        self.norm = nn.BatchNorm2D(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = F.relu(self.norm(x)).mean(axis=[2, 3])
        return self.head(x)


# --------------------------------------------------------------------------- ViT
class Attention(nn.Layer):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.softmax(paddle.matmul(q, k, transpose_y=True) * self.scale, axis=-1)
        out = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([b, n, c])
        return self.proj(out)


class Mlp(nn.Layer):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Layer):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Layer):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 16, patch: int = 2,
                 dim: int = 64, depth: int = 8, heads: int = 4, mlp_ratio: float = 2.0, drop_path: float = 0.0):
        super().__init__()
        # a small convolutional stem before patchifying: ViTs learn far faster on small data with one
        self.patch_embed = nn.Sequential(nn.Conv2D(in_chans, dim // 2, 3, padding=1), nn.BatchNorm2D(dim // 2),
                                         nn.GELU(), nn.Conv2D(dim // 2, dim, patch, stride=patch))
        n = (img_size // patch) ** 2
        self.pos_embed = self.create_parameter([1, n, dim], default_initializer=nn.initializer.TruncatedNormal(std=0.02))
        self.blocks = nn.LayerList([ViTBlock(dim, heads, mlp_ratio, drop_path) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose([0, 2, 1]) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(axis=1))


def resnet_tiny(**kwargs) -> ResNet:
    """Pre-activation ResNet, widths 16/32, 4+4 removable blocks, for 16x16 inputs."""
    return ResNet(**kwargs)


def vit_tiny(**kwargs) -> ViT:
    """ViT, 8 blocks, 64 wide, 4 heads, conv stem + 2x2 patches on 16x16 inputs (64 tokens)."""
    return ViT(**kwargs)


# name -> (factory, default input shape C,H,W)
ARCHITECTURES = {
    "resnet_tiny": (resnet_tiny, (1, 16, 16)),
    "vit_tiny": (vit_tiny, (1, 16, 16)),
}
