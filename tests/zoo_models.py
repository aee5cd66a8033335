"""Architectures in the style of public model zoos, built in code for the tests (also loadable as
``zoo_models:Name``): a DeiT/timm-style ViT (own DropPath, positional embedding), ConvNeXt (V1 with
layer scale and an arithmetic channels-first LayerNorm; V2 with GRN, itself ``x + ...``), and two
networks without any residual connection: VGG style and PP-LCNet style (depthwise-separable stacks,
squeeze-excitation gating)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from compress.model.architectures import DropPath  # timm-style: a layer class named DropPath (the block owns it)


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


def ConvNeXtV2(**kwargs):
    """ConvNeXt-V2: GRN inside each block (a residual unit nested in the block's branch)."""
    return ConvNeXt(v2=True, **kwargs)


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


# --------------------------------------------------------------------------- hierarchical transformers
# Blocks called with extra non-tensor arguments: Swin's ``blk(x, input_dimensions)``, PVT's ``blk(x, H, W)``.
def window_partition(x, w):
    b, h, wd, c = x.shape
    x = x.reshape([b, h // w, w, wd // w, w, c]).transpose([0, 1, 3, 2, 4, 5])
    return x.reshape([-1, w, w, c])


def window_reverse(windows, w, h, wd):
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // w) * (wd // w))
    x = windows.reshape([b, h // w, wd // w, w, w, c]).transpose([0, 1, 3, 2, 4, 5])
    return x.reshape([b, h, wd, c])


class WindowAttention(nn.Layer):
    """Windowed multi-head attention with a relative position bias table (Swin)."""

    def __init__(self, dim, window, heads):
        super().__init__()
        self.window, self.heads, self.scale = window, heads, (dim // heads) ** -0.5
        self.relative_position_bias_table = self.create_parameter(
            [(2 * window - 1) ** 2, heads], default_initializer=nn.initializer.TruncatedNormal(std=0.02))
        coords = paddle.stack(paddle.meshgrid(paddle.arange(window), paddle.arange(window))).flatten(1)
        rel = (coords.unsqueeze(2) - coords.unsqueeze(1)).transpose([1, 2, 0]) + (window - 1)
        self.register_buffer("relative_position_index", rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1])
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape([b, n, 3, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = paddle.matmul(q, k, transpose_y=True)
        bias = paddle.index_select(self.relative_position_bias_table, self.relative_position_index.flatten())
        attn = attn + bias.reshape([n, n, -1]).transpose([2, 0, 1]).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape([b // nw, nw, self.heads, n, n]) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape([-1, self.heads, n, n])
        out = paddle.matmul(F.softmax(attn, axis=-1), v).transpose([0, 2, 1, 3]).reshape([b, n, c])
        return self.proj(out)


class SwinBlock(nn.Layer):
    """Swin block: (shifted) window attention and MLP, called ``blk(x, input_dimensions)``; a PaddleClas-style
    ``drop_path`` (Identity at rate 0) called for both branches."""

    def __init__(self, dim, heads, window, shift, dp):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1, self.attn = nn.LayerNorm(dim), WindowAttention(dim, window, heads)
        self.drop_path = DropPath(dp) if dp > 0 else nn.Identity()
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim * 2)

    def attn_mask(self, h, w):
        if self.shift == 0:
            return None
        img = paddle.zeros([1, h, w, 1])
        cnt = 0
        for hs in (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None)):
            for ws in (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None)):
                img[:, hs, ws, :] = float(cnt)
                cnt += 1
        win = window_partition(img, self.window).reshape([-1, self.window * self.window])
        diff = win.unsqueeze(1) - win.unsqueeze(2)
        return paddle.where(diff != 0, paddle.full_like(diff, -100.0), paddle.zeros_like(diff))

    def forward(self, x, input_dimensions):
        h, w = input_dimensions
        b, n, c = x.shape
        shortcut = x
        x = self.norm1(x).reshape([b, h, w, c])
        if self.shift > 0:
            x = paddle.roll(x, shifts=(-self.shift, -self.shift), axis=(1, 2))
        windows = window_partition(x, self.window).reshape([-1, self.window * self.window, c])
        windows = self.attn(windows, mask=self.attn_mask(h, w))
        x = window_reverse(windows.reshape([-1, self.window, self.window, c]), self.window, h, w)
        if self.shift > 0:
            x = paddle.roll(x, shifts=(self.shift, self.shift), axis=(1, 2))
        x = shortcut + self.drop_path(x.reshape([b, h * w, c]))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Layer):
    """2x2 neighbouring tokens concatenated and projected: halves the resolution (never removable)."""

    def __init__(self, dim):
        super().__init__()
        self.norm, self.reduction = nn.LayerNorm(4 * dim), nn.Linear(4 * dim, 2 * dim, bias_attr=False)

    def forward(self, x, input_dimensions):
        h, w = input_dimensions
        b, n, c = x.shape
        x = x.reshape([b, h, w, c])
        x = paddle.concat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape([b, -1, 4 * c])))


class SwinStage(nn.Layer):
    """Blocks then patch merging; returns ``(x, output_dimensions)`` (a tuple: not a block itself)."""

    def __init__(self, dim, depth, heads, window, resolution, dps, downsample):
        super().__init__()
        window = min(window, resolution)
        self.blocks = nn.LayerList([SwinBlock(dim, heads, window, 0 if (i % 2 == 0 or resolution <= window)
                                              else window // 2, dps[i]) for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x, input_dimensions):
        h, w = input_dimensions
        for blk in self.blocks:
            x = blk(x, input_dimensions)
        if self.downsample is not None:
            x = self.downsample(x, input_dimensions)
            h, w = (h + 1) // 2, (w + 1) // 2
        return x, (h, w)


class SwinPatchEmbed(nn.Layer):
    def __init__(self, in_chans, dim, patch):
        super().__init__()
        self.proj, self.norm = nn.Conv2D(in_chans, dim, patch, stride=patch), nn.LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        dims = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose([0, 2, 1])), dims


class Swin(nn.Layer):
    """Swin Transformer (PaddleClas layout): window attention with relative position bias, shifted windows,
    patch merging between stages, blocks called ``blk(x, input_dimensions)``. Swin-T: ``img=224, patch=4,
    dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7``."""

    def __init__(self, img=16, patch=2, dim=16, depths=(2, 2), heads=(2, 4), window=4, drop_path_rate=0.1,
                 num_classes=10, in_chans=3):
        super().__init__()
        self.patch_embed = SwinPatchEmbed(in_chans, dim, patch)
        dps = [float(v) for v in paddle.linspace(0, drop_path_rate, sum(depths)).numpy()]
        res, layers = img // patch, []
        for i, d in enumerate(depths):
            layers.append(SwinStage(dim * 2 ** i, d, heads[i], window, res // 2 ** i, dps[sum(depths[:i]):][:d],
                                    i < len(depths) - 1))
        self.layers = nn.LayerList(layers)
        self.norm = nn.LayerNorm(dim * 2 ** (len(depths) - 1))
        self.head = nn.Linear(dim * 2 ** (len(depths) - 1), num_classes)

    def forward(self, x):
        x, dims = self.patch_embed(x)
        for layer in self.layers:
            x, dims = layer(x, dims)
        return self.head(self.norm(x).mean(axis=1))


class SRAttention(nn.Layer):
    """PVT spatial-reduction attention: keys and values from a strided conv over the token map, ``(x, H, W)``."""

    def __init__(self, dim, heads, sr):
        super().__init__()
        self.heads, self.scale, self.sr_ratio = heads, (dim // heads) ** -0.5, sr
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, dim * 2), nn.Linear(dim, dim)
        if sr > 1:
            self.sr, self.norm = nn.Conv2D(dim, dim, sr, stride=sr), nn.LayerNorm(dim)

    def forward(self, x, H, W):
        b, n, c = x.shape
        q = self.q(x).reshape([b, n, self.heads, c // self.heads]).transpose([0, 2, 1, 3])
        if self.sr_ratio > 1:
            x_ = self.sr(x.transpose([0, 2, 1]).reshape([b, c, H, W])).reshape([b, c, -1]).transpose([0, 2, 1])
            x = self.norm(x_)
        kv = self.kv(x).reshape([b, -1, 2, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        attn = F.softmax(paddle.matmul(q, kv[0], transpose_y=True) * self.scale, axis=-1)
        return self.proj(paddle.matmul(attn, kv[1]).transpose([0, 2, 1, 3]).reshape([b, n, c]))


class DWConvMlp(nn.Layer):
    """PVT-v2 MLP: a depthwise conv over the token map between the two linears, ``(x, H, W)``."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dwconv, self.act = nn.Conv2D(hidden, hidden, 3, padding=1, groups=hidden), nn.GELU()

    def forward(self, x, H, W):
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose([0, 2, 1]).reshape([b, c, H, W])).flatten(2).transpose([0, 2, 1])
        return self.fc2(self.act(x))


class PVTBlock(nn.Layer):
    def __init__(self, dim, heads, sr, dp):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SRAttention(dim, heads, sr)
        self.drop_path = DropPath(dp) if dp > 0 else nn.Identity()
        self.norm2, self.mlp = nn.LayerNorm(dim), DWConvMlp(dim, dim * 2)

    def forward(self, x, H, W):
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        return x + self.drop_path(self.mlp(self.norm2(x), H, W))


class OverlapPatchEmbed(nn.Layer):
    def __init__(self, in_chans, dim, patch, stride):
        super().__init__()
        self.proj, self.norm = nn.Conv2D(in_chans, dim, patch, stride=stride, padding=patch // 2), nn.LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        _, _, H, W = x.shape
        return self.norm(x.flatten(2).transpose([0, 2, 1])), H, W


class PVT(nn.Layer):
    """PVT-v2 (PaddleClas layout): stages as numbered attributes (``block1``, ``block2`` LayerLists) looked up
    with ``getattr`` in forward, overlapping patch embeddings returning ``(x, H, W)``, blocks called
    ``blk(x, H, W)``."""

    def __init__(self, dims=(16, 32), depths=(2, 2), heads=(1, 2), srs=(2, 1), drop_path_rate=0.1,
                 num_classes=10, in_chans=3):
        super().__init__()
        self.num_stages = len(dims)
        dps = [float(v) for v in paddle.linspace(0, drop_path_rate, sum(depths)).numpy()]
        for i in range(self.num_stages):
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(in_chans if i == 0 else dims[i - 1], dims[i],
                                                                   3 if i else 5, 2))
            setattr(self, f"block{i + 1}", nn.LayerList(
                [PVTBlock(dims[i], heads[i], srs[i], dps[sum(depths[:i]) + j]) for j in range(depths[i])]))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i]))
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        b = x.shape[0]
        for i in range(self.num_stages):
            x, H, W = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, H, W)
            x = getattr(self, f"norm{i + 1}")(x)
            if i != self.num_stages - 1:
                x = x.reshape([b, H, W, -1]).transpose([0, 3, 1, 2])
        return self.head(x.mean(axis=1))


# --------------------------------------------------------------------------- zoo CNN code patterns
class GroupedBottleneck(nn.Layer):
    """ResNeXt bottleneck (grouped 3x3), post-activation; a projection shortcut where the shape changes."""

    def __init__(self, cin, cout, stride, groups=4, shortcut=True):
        super().__init__()
        mid = cout // 2
        self.conv0 = nn.Sequential(nn.Conv2D(cin, mid, 1, bias_attr=False), nn.BatchNorm2D(mid), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2D(mid, mid, 3, stride=stride, padding=1, groups=groups, bias_attr=False),
                                   nn.BatchNorm2D(mid), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2D(mid, cout, 1, bias_attr=False), nn.BatchNorm2D(cout))
        self.shortcut = shortcut
        if not shortcut:
            self.short = nn.Sequential(nn.Conv2D(cin, cout, 1, stride=stride, bias_attr=False), nn.BatchNorm2D(cout))

    def forward(self, inputs):
        y = self.conv2(self.conv1(self.conv0(inputs)))
        short = inputs if self.shortcut else self.short(inputs)
        return F.relu(paddle.add(x=short, y=y))


class ListResNeXt(nn.Layer):
    """ResNeXt as PaddleClas writes it: each block registered with ``add_sublayer('bb_%d_%d', ...)`` *and* kept
    in a plain Python list that forward iterates (``self.block_list``)."""

    def __init__(self, widths=(16, 32), depths=(2, 2), num_classes=10, in_chans=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2D(in_chans, widths[0], 3, padding=1, bias_attr=False),
                                  nn.BatchNorm2D(widths[0]), nn.ReLU())
        self.block_list = []
        cin = widths[0]
        for s, (w, d) in enumerate(zip(widths, depths)):
            for i in range(d):
                first = i == 0
                blk = self.add_sublayer(f"bb_{s}_{i}", GroupedBottleneck(
                    cin, w, 2 if first and s > 0 else 1, shortcut=not (first and (s > 0 or cin != w))))
                self.block_list.append(blk)
                cin = w
        self.out = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        y = self.conv(x)
        for blk in self.block_list:
            y = blk(y)
        return self.out(y.mean([2, 3]))


class MBConv(nn.Layer):
    """EfficientNet MBConv: expand, depthwise, squeeze-excitation, project; a skip where stride 1 and equal
    channels."""

    def __init__(self, cin, cout, stride, expand=2):
        super().__init__()
        mid = cin * expand
        self._expand = nn.Sequential(nn.Conv2D(cin, mid, 1, bias_attr=False), nn.BatchNorm2D(mid), nn.Swish())
        self._depthwise = nn.Sequential(nn.Conv2D(mid, mid, 3, stride=stride, padding=1, groups=mid,
                                                  bias_attr=False), nn.BatchNorm2D(mid), nn.Swish())
        self._se_reduce, self._se_expand = nn.Conv2D(mid, max(1, cin // 4), 1), nn.Conv2D(max(1, cin // 4), mid, 1)
        self._project = nn.Sequential(nn.Conv2D(mid, cout, 1, bias_attr=False), nn.BatchNorm2D(cout))
        self.skip = stride == 1 and cin == cout

    def forward(self, inputs):
        x = self._depthwise(self._expand(inputs))
        s = F.sigmoid(self._se_expand(F.swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1)))))
        x = self._project(x * s)
        return paddle.add(x, inputs) if self.skip else x


class DottedNames(nn.Layer):
    """EfficientNet as PaddleClas writes it: blocks registered under names that contain dots
    (``add_sublayer('_blocks.3.', ...)``) inside a feature extractor, and run from a plain list."""

    def __init__(self, num_classes=10, in_chans=3):
        super().__init__()
        self._ef = _DottedFeatures(in_chans)
        self._fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self._fc(self._ef(x).mean([2, 3]))


class _DottedFeatures(nn.Layer):
    def __init__(self, in_chans):
        super().__init__()
        self._conv_stem = nn.Sequential(nn.Conv2D(in_chans, 16, 3, padding=1, bias_attr=False), nn.BatchNorm2D(16))
        self.conv_seq = []
        for idx, (cin, cout, stride) in enumerate([(16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1)]):
            self.conv_seq.append(self.add_sublayer(f"_blocks.{idx}.", MBConv(cin, cout, stride)))

    def forward(self, x):
        x = F.swish(self._conv_stem(x))
        for blk in self.conv_seq:
            x = blk(x)
        return x


class SABlock(nn.Layer):
    """UniFormer self-attention block: a conv positional embedding on the feature map, then attention and MLP on
    the tokens; the skip leaves the map's shape through flatten/transpose and comes back through
    transpose/reshape."""

    def __init__(self, dim, heads, dp):
        super().__init__()
        self.pos_embed = nn.Conv2D(dim, dim, 3, padding=1, groups=dim)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.drop_path = DropPath(dp) if dp > 0 else nn.Identity()
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim * 2)

    def forward(self, x):
        x = x + self.pos_embed(x)
        b, n, h, w = x.shape
        x = x.flatten(2).transpose([0, 2, 1])
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.transpose([0, 2, 1]).reshape([b, n, h, w])


class ConvStageBlock(nn.Layer):
    """UniFormer conv block (a depthwise-conv 'attention'), on the feature map."""

    def __init__(self, dim, dp):
        super().__init__()
        self.norm1, self.conv = nn.BatchNorm2D(dim), nn.Conv2D(dim, dim, 3, padding=1, groups=dim)
        self.drop_path = DropPath(dp) if dp > 0 else nn.Identity()

    def forward(self, x):
        return x + self.drop_path(self.conv(self.norm1(x)))


class ReshapeSkip(nn.Layer):
    """UniFormer style: conv blocks, then attention blocks whose skip runs through flatten/transpose/reshape."""

    def __init__(self, dim=16, depths=(2, 3), heads=2, drop_path_rate=0.1, num_classes=10, in_chans=3):
        super().__init__()
        self.patch_embed = nn.Sequential(nn.Conv2D(in_chans, dim, 4, stride=4), nn.BatchNorm2D(dim))
        dps = [float(v) for v in paddle.linspace(0, drop_path_rate, sum(depths)).numpy()]
        self.blocks1 = nn.LayerList([ConvStageBlock(dim, dps[i]) for i in range(depths[0])])
        self.blocks2 = nn.LayerList([SABlock(dim, heads, dps[depths[0] + i]) for i in range(depths[1])])
        self.norm, self.head = nn.BatchNorm2D(dim), nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for blk in self.blocks1:
            x = blk(x)
        for blk in self.blocks2:
            x = blk(x)
        return self.head(self.norm(x).flatten(2).mean(-1))


# name -> (factory, input shape C,H,W, removable units by reading the code): the zoo patterns above, for
# tests and benchmarks/zoo_coverage.py
ZOO = {
    "DeiT": (DeiT, (3, 32, 32), 4),
    "ConvNeXt": (ConvNeXt, (3, 32, 32), 8),
    "ConvNeXtV2": (ConvNeXtV2, (3, 32, 32), 8),
    "VGG": (VGG, (3, 32, 32), 0),
    "TinyLCNet": (TinyLCNet, (3, 32, 32), 0),
    "Swin": (Swin, (3, 16, 16), 4),
    "PVT": (PVT, (3, 16, 16), 4),
    "ListResNeXt": (ListResNeXt, (3, 16, 16), 3),
    "DottedNames": (DottedNames, (3, 16, 16), 4),
    "ReshapeSkip": (ReshapeSkip, (3, 16, 16), 5),
}


# --------------------------------------------------------------------------- factories and blocks that misbehave
class _Logger:
    """A zoo's package logger, set up only by its own launcher (None until then)."""

    logger = None


def FactoryFailing(num_classes=10, in_chans=3):
    """A factory that fails in its own code (it logs through a logger nobody set up)."""
    _Logger.logger.warning("building")
    return VGG(num_classes, in_chans)


def FactoryPretrained(pretrained=True, num_classes=10, in_chans=3):
    """A factory whose ``pretrained`` defaults to True (it would download weights)."""
    if pretrained:
        raise RuntimeError("would download pretrained weights from the network")
    return ConvNeXt(num_classes=num_classes, in_chans=in_chans)


class TupleBlock(nn.Layer):
    """A residual block that returns ``(x, H, W)``: not callable as a block, though ``x + f(x)``."""

    def __init__(self, dim):
        super().__init__()
        self.norm, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim * 2)

    def forward(self, x, H, W):
        return x + self.mlp(self.norm(x)), H, W


class TupleBlocks(nn.Layer):
    def __init__(self, dim=16, depth=3, num_classes=10, in_chans=3):
        super().__init__()
        self.embed = OverlapPatchEmbed(in_chans, dim, 3, 2)
        self.blocks = nn.LayerList([TupleBlock(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x, H, W = self.embed(x)
        for blk in self.blocks:
            x, H, W = blk(x, H, W)
        return self.head(x.mean(axis=1))


class SecondStream(nn.Layer):
    """A block called with a second tensor of its input's shape (a projected shortcut passed in, DLA-style
    ``tree1(x, residual)``): its output is built from that stream, so it is no block."""

    def __init__(self, c=8, num_classes=10, in_chans=3):
        super().__init__()
        self.stem = nn.Conv2D(in_chans, c, 3, padding=1)
        self.project = nn.Conv2D(c, c, 1)
        self.body = _TwoInputs(c)
        self.same = _TwoInputs(c)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.body(x, self.project(x))     # residual = project(x): not x
        x = self.same(x, x)                   # residual is x itself: a block
        return self.head(x.mean([2, 3]))


class _TwoInputs(nn.Layer):
    def __init__(self, c):
        super().__init__()
        self.conv, self.bn = nn.Conv2D(c, c, 3, padding=1), nn.BatchNorm2D(c)

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        return F.relu(self.bn(self.conv(x)) + residual)
