"""Tiny models built in code for the tests (also loadable as tests/tiny_models.py:Name)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class Res(nn.Layer):
    def __init__(self, c, useless=False):
        super().__init__()
        self.conv = nn.Conv2D(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2D(c)
        self.useless = useless

    def forward(self, x):
        h = self.bn(self.conv(F.relu(x)))
        return x + (h * 0.0 if self.useless else h)


class Down(nn.Layer):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2D(cin, cout, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2D(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class TinyCNN(nn.Layer):
    """stem -> stage(LayerList of Sequential: 2 blocks | down + 2 blocks) -> head; 4 removable blocks."""

    def __init__(self, num_classes=10, in_chans=1, width=8, useless=None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(in_chans, width, 3, padding=1), nn.BatchNorm2D(width), nn.ReLU())
        self.stages = nn.LayerList([
            nn.Sequential(Res(width, useless == 0), Res(width, useless == 1)),
            nn.Sequential(Down(width, 2 * width), Res(2 * width, useless == 2), Res(2 * width, useless == 3)),
        ])
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for s in self.stages:
            x = s(x)
        return self.head(x.mean(axis=[2, 3]))


class Block(nn.Layer):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class TinyTransformer(nn.Layer):
    """Patch embedding, 4 blocks nested as LayerList[LayerList[2], LayerList[2]], mean-pool head."""

    def __init__(self, num_classes=10, in_chans=1, dim=16):
        super().__init__()
        self.embed = nn.Conv2D(in_chans, dim, 2, stride=2)
        self.groups = nn.LayerList([nn.LayerList([Block(dim), Block(dim)]) for _ in range(2)])
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose([0, 2, 1])
        for g in self.groups:
            for b in g:
                x = b(x)
        return self.head(x.mean(axis=1))


def tiny_cnn(**kw):
    return TinyCNN(**kw)


class Tapped(nn.Layer):
    """A residual block y = x + f(x) that also keeps f(x) for a later layer to read (a side head)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2D(c, c, 3, padding=1)
        self.seen = {}

    def forward(self, x):
        h = self.conv(F.relu(x))
        self.seen["h"] = h
        return x + h


class SideHeadCNN(nn.Layer):
    """stem -> 3 blocks (the middle one tapped) -> head, which also reads the tapped block's branch output:
    removing block 1 is not the same as skipping it."""

    def __init__(self, num_classes=10, in_chans=1, width=8):
        super().__init__()
        self.stem = nn.Conv2D(in_chans, width, 3, padding=1)
        self.blocks = nn.LayerList([Res(width), Tapped(width), Res(width)])
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        side = getattr(self.blocks[1], "seen", {}).get("h")
        pooled = x.mean(axis=[2, 3])
        return self.head(pooled if side is None else pooled + side.mean(axis=[2, 3]))


# --------------------------------------------------------------------------- timm-style ViT (third party)
def timm_drop_path(x, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
    """timm's drop_path function."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    random_tensor = paddle.bernoulli(paddle.full([x.shape[0]] + [1] * (x.ndim - 1), keep_prob, dtype=x.dtype))
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor = random_tensor / keep_prob
    return x * random_tensor


class TimmDropPath(nn.Layer):
    """timm's DropPath (a block's drop_path1 / drop_path2, each called once)."""

    def __init__(self, drop_prob=0.0, scale_by_keep=True):
        super().__init__()
        self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

    def forward(self, x):
        return timm_drop_path(x, self.drop_prob, self.training, self.scale_by_keep)


class TimmAttention(nn.Layer):
    """timm's Attention (q/k norms and dropouts as identities, as timm builds them by default)."""

    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.q_norm, self.k_norm = nn.Identity(), nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape([B, N, 3, self.num_heads, self.head_dim]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q) * self.head_dim ** -0.5, self.k_norm(k)
        attn = self.attn_drop(F.softmax(q @ k.transpose([0, 1, 3, 2]), axis=-1))
        x = (attn @ v).transpose([0, 2, 1, 3]).reshape([B, N, C])
        return self.proj_drop(self.proj(x))


class TimmMlp(nn.Layer):
    """timm's Mlp: fc1, act, drop1, norm (identity), fc2, drop2."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class TimmBlock(nn.Layer):
    """timm's Block: x + drop_path1(ls1(attn(norm1(x)))), then x + drop_path2(ls2(mlp(norm2(x))))."""

    def __init__(self, dim, num_heads, mlp_ratio=2.0, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TimmAttention(dim, num_heads)
        self.ls1 = nn.Identity()
        # as in timm: no DropPath layer at all when the rate is 0 (compress then sees a wrapped block)
        self.drop_path1 = TimmDropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TimmMlp(dim, int(dim * mlp_ratio))
        self.ls2 = nn.Identity()
        self.drop_path2 = TimmDropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class TimmViT(nn.Layer):
    """A small timm-style VisionTransformer (patch_embed, cls-free mean pooling, blocks, norm, head); its blocks
    get DropPath layers only with ``drop_path_rate`` > 0 (timm's rule; 0.1 here, as timm ViTs are usually
    fine-tuned; compress sets the rates itself when it drives them)."""

    def __init__(self, num_classes=10, in_chans=1, img_size=16, patch=2, embed_dim=32, depth=4, num_heads=2,
                 mlp_ratio=2.0, drop_path_rate=0.1):
        super().__init__()
        self.patch_embed = nn.Conv2D(in_chans, embed_dim, patch, stride=patch)
        n = (img_size // patch) ** 2
        self.pos_embed = self.create_parameter([1, n, embed_dim],
                                               default_initializer=nn.initializer.TruncatedNormal(std=0.02))
        self.blocks = nn.Sequential(*[TimmBlock(embed_dim, num_heads, mlp_ratio, drop_path_rate)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose([0, 2, 1]) + self.pos_embed
        x = self.blocks(x)
        return self.head(self.norm(x).mean(axis=1))
