"""Two ordinary Paddle models written the way third-party code is, for `benchmarks/pipelines.py`
through `--arch benchmarks/third_party.py:Class` (nothing here knows about compress beyond borrowing
its timm-style ``DropPath`` layer, as benchmarks/real_size.py does).

- ``TimmViT``: a timm-style ViT (patch embedding, class token, pre-norm blocks with ``drop_path1`` /
  ``drop_path2``), 8 blocks, dim 48, 3 heads.
- ``SmallResNet``: a post-activation ResNet of torchvision-style ``BasicBlock`` s (conv-bn-relu-conv-bn,
  ``relu(x + f(x))``), widths 16/32/64, 3 blocks a stage with a projection shortcut opening stages 2 and 3,
  so 7 of its 9 blocks are removable.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from compress.model.architectures import DropPath  # timm-style: a layer class named DropPath (the block owns it)


class _Attention(nn.Layer):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        attn = F.softmax(paddle.matmul(qkv[0], qkv[1], transpose_y=True) * self.scale, axis=-1)
        return self.proj(paddle.matmul(attn, qkv[2]).transpose([0, 2, 1, 3]).reshape([b, n, c]))


class _Block(nn.Layer):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class TimmViT(nn.Layer):
    """timm-style ViT: conv patch embedding, class token, learned positions, pre-norm blocks."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 16, patch: int = 2,
                 embed_dim: int = 48, depth: int = 8, num_heads: int = 3, mlp_ratio: float = 2.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.patch_embed = nn.Conv2D(in_chans, embed_dim, patch, stride=patch)
        n = (img_size // patch) ** 2
        init = nn.initializer.TruncatedNormal(std=0.02)
        self.cls_token = self.create_parameter([1, 1, embed_dim], default_initializer=init)
        self.pos_embed = self.create_parameter([1, n + 1, embed_dim], default_initializer=init)
        self.blocks = nn.LayerList([_Block(embed_dim, num_heads, mlp_ratio, drop_path_rate) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward_features(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose([0, 2, 1])
        cls = self.cls_token.expand([tokens.shape[0], -1, -1])
        x = paddle.concat([cls, tokens], axis=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x)[:, 0])


class BasicBlock(nn.Layer):
    """torchvision's BasicBlock: relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(cout)
        self.conv2 = nn.Conv2D(cout, cout, 3, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(cout)
        self.downsample = (nn.Sequential(nn.Conv2D(cin, cout, 1, stride=stride, bias_attr=False), nn.BatchNorm2D(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(identity + out)


class SmallResNet(nn.Layer):
    """Stem, three stages of BasicBlocks (widths 16/32/64, strides 1/2/2), global pooling, linear head."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, widths=(16, 32, 64), blocks_per_stage: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(in_chans, widths[0], 3, padding=1, bias_attr=False),
                                  nn.BatchNorm2D(widths[0]), nn.ReLU())
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers = [BasicBlock(cin, w, 1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.layers = nn.LayerList(stages)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.layers:
            x = stage(x)
        return self.head(x.mean(axis=[2, 3]))
