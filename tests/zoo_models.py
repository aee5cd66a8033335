"""Architectures in the style of public model zoos, built in code for the tests (also loadable as
``zoo_models:Name``): a DeiT/timm-style ViT (own DropPath, positional embedding), ConvNeXt (V1 with
layer scale and an arithmetic channels-first LayerNorm; V2 with GRN, itself ``x + ...``), and two
networks without any residual connection: VGG style and PP-LCNet style (depthwise-separable stacks,
squeeze-excitation gating)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from compress.architectures import DropPath  # timm-style: a layer class named DropPath (the block owns it)


class Attention(nn.Layer):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.1)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.attn_drop(F.softmax(paddle.matmul(q, k, transpose_y=True) * self.scale, axis=-1))
        return self.proj_drop(self.proj(paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([b, n, c])))


class Mlp(nn.Layer):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DeiTBlock(nn.Layer):
    def __init__(self, dim, heads, dp=0.1, mlp_ratio=2):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.drop_path = DropPath(dp)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PosEmbed(nn.Layer):
    """Adds a parameter: shape-preserving, 'x + something', but no residual branch."""

    def __init__(self, n, dim):
        super().__init__()
        self.pos = self.create_parameter([1, n, dim], default_initializer=nn.initializer.Normal(std=0.02))

    def forward(self, x):
        return x + self.pos


class PatchEmbed(nn.Layer):
    def __init__(self, in_chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2D(in_chans, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose([0, 2, 1])


class DeiT(nn.Layer):
    def __init__(self, img=32, patch=8, dim=32, depth=4, heads=4, num_classes=10, in_chans=3, mlp_ratio=2):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, dim, patch)
        self.cls_token = self.create_parameter([1, 1, dim], default_initializer=nn.initializer.Constant(0.0))
        self.pos_embed = PosEmbed((img // patch) ** 2 + 1, dim)
        self.pos_drop = nn.Dropout(0.1)
        self.blocks = nn.LayerList([DeiTBlock(dim, heads, 0.1 * i / depth, mlp_ratio) for i in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        cls = self.cls_token.expand([x.shape[0], -1, -1])
        x = self.pos_drop(self.pos_embed(paddle.concat([cls, x], axis=1)))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


class LayerNormCF(nn.Layer):
    """channels_first LayerNorm written with tensor arithmetic (as in ConvNeXt's reference code)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = self.create_parameter([dim], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([dim], default_initializer=nn.initializer.Constant(0.0), is_bias=True)
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / paddle.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Layer):
    """ConvNeXt-V2 global response normalisation: itself 'x + something' (gamma, beta = 0 at init)."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = self.create_parameter([1, 1, 1, dim], default_initializer=nn.initializer.Normal(std=0.1))
        self.beta = self.create_parameter([1, 1, 1, dim], default_initializer=nn.initializer.Normal(std=0.1))

    def forward(self, x):
        gx = paddle.norm(x, p=2, axis=[1, 2], keepdim=True)
        nx = gx / (gx.mean(axis=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Layer):
    def __init__(self, dim, dp=0.0, v2=False):
        super().__init__()
        self.dwconv = nn.Conv2D(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim) if v2 else None
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = None if v2 else self.create_parameter(
            [dim], default_initializer=nn.initializer.Constant(1e-6))
        self.drop_path = DropPath(dp)

    def forward(self, x):
        input = x
        x = self.dwconv(x)
        x = x.transpose([0, 2, 3, 1])
        x = self.act(self.pwconv1(self.norm(x)))
        if self.grn is not None:
            x = self.grn(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        x = x.transpose([0, 3, 1, 2])
        return input + self.drop_path(x)


class ConvNeXt(nn.Layer):
    def __init__(self, dims=(16, 24, 32, 40), depths=(2, 2, 2, 2), v2=False, num_classes=10, in_chans=3):
        super().__init__()
        self.downsample_layers = nn.LayerList(
            [nn.Sequential(nn.Conv2D(in_chans, dims[0], 4, stride=4), LayerNormCF(dims[0]))] +
            [nn.Sequential(LayerNormCF(dims[i]), nn.Conv2D(dims[i], dims[i + 1], 2, stride=2)) for i in range(3)])
        self.stages = nn.LayerList([nn.Sequential(*[ConvNeXtBlock(dims[i], 0.1, v2) for _ in range(depths[i])])
                                    for i in range(4)])
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
        return self.head(self.norm(x.mean([-2, -1])))


class VGG(nn.Layer):
    """VGG style: conv-BN-ReLU stacks and pooling, no skip connection anywhere."""

    def __init__(self, num_classes=10, in_chans=3):
        super().__init__()
        cfg, layers, c = [16, 16, "M", 32, 32, "M", 64, 64], [], in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2D(2, 2))
            else:
                layers += [nn.Conv2D(c, v, 3, padding=1), nn.BatchNorm2D(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean([2, 3]))


class SE(nn.Layer):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.conv1, self.conv2 = nn.Conv2D(c, c // r, 1), nn.Conv2D(c // r, c, 1)
        self.relu, self.hardsigmoid = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x):
        return paddle.multiply(x=x, y=self.hardsigmoid(self.conv2(self.relu(self.conv1(self.pool(x))))))


class ConvBNLayer(nn.Layer):
    def __init__(self, cin, cout, k, stride, groups=1):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(cout)
        self.hardswish = nn.Hardswish()

    def forward(self, x):
        return self.hardswish(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Layer):
    def __init__(self, cin, cout, stride, k=3, use_se=False):
        super().__init__()
        self.dw_conv = ConvBNLayer(cin, cin, k, stride, groups=cin)
        self.se = SE(cin) if use_se else None
        self.pw_conv = ConvBNLayer(cin, cout, 1, 1)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


class TinyLCNet(nn.Layer):
    """PP-LCNet style: depthwise-separable stacks, some with equal channels and stride 1, no skips."""

    def __init__(self, num_classes=10, in_chans=3):
        super().__init__()
        self.conv1 = ConvBNLayer(in_chans, 16, 3, 2)
        self.blocks2 = nn.Sequential(DepthwiseSeparable(16, 32, 1))
        self.blocks3 = nn.Sequential(DepthwiseSeparable(32, 64, 2), DepthwiseSeparable(64, 64, 1))
        self.blocks4 = nn.Sequential(DepthwiseSeparable(64, 128, 2, 5), DepthwiseSeparable(128, 128, 1, 5, True),
                                     DepthwiseSeparable(128, 128, 1, 5, True))
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.blocks4(self.blocks3(self.blocks2(self.conv1(x))))
        return self.fc(paddle.flatten(self.avg_pool(x), 1))
