"""Building blocks: image encoder, image decoder, MLP.

All modules keep parameters in float32 and compute in `dtype` (float32 or bfloat16);
normalisation statistics are always computed in float32. Images are channel-last (NHWC),
the layout XLA's CPU convolutions are fastest in.

Decoder kinds (`Decoder.kind`), all mapping a feature vector to a (64, 64, C) image mean:
  conv_transpose  DreamerV2: Dense -> 1x1x(32d) -> ConvTranspose k5,5,6,6 stride 2 VALID
                  (1 -> 5 -> 13 -> 30 -> 64). XLA lowers a transposed conv to a conv with a
                  dilated input, which on CPU falls off the fast path (see benchmarks/README.md).
  upsample        Dense -> 4x4xC0, then per stage nearest x2 upsampling + 3x3 conv.
  depth_to_space  Dense -> 4x4xC0, then per stage a kxk conv producing 4*C channels and a
                  pixel shuffle (sub-pixel convolution). With k=3 it costs the same FLOPs per
                  output pixel as upsample (9*Cin*C) but each of the 4 output phases has its own
                  3x3 kernel, so it is strictly more expressive; k=2 is exactly a ConvTranspose
                  k4 s2 at 4/9 of the cost.
Convolutions other than conv_transpose can run as XLA convolutions or as matmuls
(`conv_impl`, see `conv2d`).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

Dtype = Any

DECODER_KINDS = ("conv_transpose", "upsample", "depth_to_space")


def get_act(name):
    acts = {
        "elu": nn.elu,
        "relu": nn.relu,
        "silu": nn.silu,
        "gelu": nn.gelu,
        "tanh": jnp.tanh,
        "none": lambda x: x,
    }
    if name not in acts:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(acts)}")
    return acts[name]


class Norm(nn.Module):
    """LayerNorm over the last (channel) axis computed in float32, or identity."""

    kind: str = "layer"
    eps: float = 1e-3

    @nn.compact
    def __call__(self, x):
        if self.kind == "none":
            return x
        if self.kind != "layer":
            raise ValueError(f"unknown norm {self.kind!r}; expected 'layer' or 'none'")
        dtype = x.dtype
        x = nn.LayerNorm(epsilon=self.eps, dtype=jnp.float32, param_dtype=jnp.float32)(
            x.astype(jnp.float32))
        return x.astype(dtype)


CONV_IMPLS = ("lax", "matmul")  # what a training config may ask for
# Forward-only choices, for acting (agents/acting.WorldModelAgent): `strided` gathers the
# k*k taps of a stride-2 VALID conv as strided slices (no space-to-depth transposes) and
# does one matmul; `acting` picks per layer at trace time (`acting_conv_impl`).
FORWARD_CONV_IMPLS = CONV_IMPLS + ("strided", "acting")
ACTING_STRIDED_MIN_BATCH = 4  # see acting_conv_impl


def acting_conv_impl(x, stride, padding, backend=None):
    """The forward convolution acting uses for this layer, from its traced shapes.

    On CPU, XLA's convolution spends more time gathering patches than multiplying at a
    batch of 16 frames. The `strided` im2col takes 0.70-0.81x its time on the paper
    encoder's three layers with Cin > 1 at 16 frames and 0.88-0.96x at 4; at 1 frame it is
    slower on two of them, and on the 1-channel first layer at every batch
    (benchmarks/conv_forward.py -> benchmarks/results/conv_forward.json). On GPU/TPU,
    XLA's convolution (cuDNN, the TPU's) is the one to use.
    """
    backend = jax.default_backend() if backend is None else backend
    if (str(backend).lower() == "cpu" and stride == 2 and padding == "VALID"
            and x.shape[-1] > 1 and x.shape[0] >= ACTING_STRIDED_MIN_BATCH):
        return "strided"
    return "lax"


def conv2d(x, w, stride=1, padding="SAME", impl="matmul", dot_general=jax.lax.dot_general):
    """NHWC x HWIO convolution, either XLA's (`lax`) or written as matmuls (`matmul`).

    XLA's CPU convolution is fast forward but slow backward (the input gradient of a
    strided conv and the weight gradient become dilated convolutions off the fast path).
    `matmul` writes the same convolution as one (N*H*W, taps*Cin) x (taps*Cin, Cout) matmul
    over shifted views gathered along channels (im2col), so forward and backward are
    plain GEMMs:
      stride 2, VALID, even k: space-to-depth by 2, then a (k/2)x(k/2) stride-1 conv.
      stride 1, SAME: pad, then gather the k*k shifted views.
    Both give the same numbers (tests check it); see benchmarks/README.md for timings.
    Forward only (acting): `strided` and `acting` (FORWARD_CONV_IMPLS, above).
    dot_general: the product of the matmul forms (`matmul_fn`: bf16_dot_general rounds
    its operands to bfloat16); XLA's convolution (`lax`) ignores it and stays float32.
    """
    k = w.shape[0]
    assert w.shape[1] == k and w.shape[2] == x.shape[-1], f"kernel {w.shape} vs input {x.shape}"
    if impl == "acting":
        impl = acting_conv_impl(x, stride, padding)
    if impl == "lax":
        return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if impl == "strided":
        if not (stride == 2 and padding == "VALID"):
            raise ValueError(f"strided conv supports stride 2 VALID, got stride {stride} "
                             f"{padding}")
        n, h, wd, c = x.shape
        ho, wo = (h - k) // 2 + 1, (wd - k) // 2 + 1
        # im2col straight from strided views, taps (a, b) in HWIO order along channels
        patches = jnp.concatenate([x[:, a:a + 2 * ho - 1:2, b:b + 2 * wo - 1:2]
                                   for a in range(k) for b in range(k)], -1)
        return _patch_product(patches, w, dot_general)
    if impl != "matmul":
        raise ValueError(f"unknown conv impl {impl!r}; expected one of {FORWARD_CONV_IMPLS}")
    n, h, wd, c = x.shape
    o = w.shape[-1]
    if stride == 2 and padding == "VALID" and k % 2 == 0:
        ho, wo = (h - k) // 2 + 1, (wd - k) // 2 + 1
        k2 = k // 2
        # Rows/cols 0 .. 2*(ho-1)+k-1 are read; fold 2x2 pixel blocks into channels.
        x = x[:, :2 * (ho + k2 - 1), :2 * (wo + k2 - 1)]
        x = x.reshape(n, ho + k2 - 1, 2, wo + k2 - 1, 2, c).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(n, ho + k2 - 1, wo + k2 - 1, 4 * c)
        # w[2a + r, 2b + s] -> w2[a, b, (r, s, c)]
        w = w.reshape(k2, 2, k2, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(k2, k2, 4 * c, o)
        taps = [(a, b) for a in range(k2) for b in range(k2)]
        out_h, out_w = ho, wo
    elif stride == 1 and padding == "SAME":
        lo = (k - 1) // 2
        x = jnp.pad(x, ((0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)))
        taps = [(a, b) for a in range(k) for b in range(k)]
        out_h, out_w = h, wd
    else:
        raise ValueError(f"matmul conv supports stride 2 VALID (even k) or stride 1 SAME, "
                         f"got stride {stride} {padding} k={k}")
    # im2col: gather the taps along channels and do one matmul with K = taps * Cin. The
    # channel counts here are small (8..128), and one deep GEMM beats summing `taps`
    # shallow ones that each rewrite the whole output (benchmarks/README.md: decoder
    # fwd+bwd 0.66 s -> 0.55 s at the small preset).
    patches = jnp.concatenate([x[:, a:a + out_h, b:b + out_w] for a, b in taps], -1)
    return _patch_product(patches, w, dot_general)


def _patch_product(patches, w, dot_general):
    """(N, H, W, taps*Cin) patches x the (.., .., Cin, Cout) kernel, taps in its order."""
    return dot_general(patches, w.reshape(-1, w.shape[-1]), (((3,), (0,)), ((), ())))


class Conv(nn.Module):
    """Convolution with nn.Conv's parameter layout (kernel HWIO, bias) and a choice of impl."""

    features: int
    kernel: int
    stride: int = 1
    padding: str = "SAME"
    use_bias: bool = True
    impl: str = "matmul"
    dtype: Dtype = jnp.float32
    zero_init: bool = False   # start at zero output (see Decoder.pixel_bias)
    matmul_dtype: str = "float32"   # the matmul forms' product (matmul_fn); acting only

    @nn.compact
    def __call__(self, x):
        shape = (self.kernel, self.kernel, x.shape[-1], self.features)
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        w = self.param("kernel", init, shape, jnp.float32)
        y = conv2d(x.astype(self.dtype), w.astype(self.dtype), self.stride, self.padding,
                   self.impl, dot_general=matmul_fn(self.matmul_dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                               jnp.float32).astype(self.dtype)
        return y


MATMUL_DTYPES = ("float32", "bfloat16")


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`lax.dot_general` with both operands rounded to bfloat16 and the products summed in
    float32 (a float32 result): one bf16 pass, what a TPU's DEFAULT precision does with
    float32 matmuls. On a CPU with AMX-BF16 XLA runs the GRU's product 4x faster than in
    float32 at batch 512, but slower at batch 1 (benchmarks/results/matmul_floor.json);
    each operand's relative rounding error is at most 2^-9."""
    del preferred_element_type
    return jax.lax.dot_general(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16),
                               dimension_numbers, precision=precision,
                               preferred_element_type=jnp.float32)


def matmul_fn(matmul_dtype):
    """The dot_general of a Dense whose matmuls run in `matmul_dtype` (MATMUL_DTYPES)."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"matmul_dtype must be one of {MATMUL_DTYPES}, got {matmul_dtype!r}")
    return bf16_dot_general if matmul_dtype == "bfloat16" else jax.lax.dot_general


class DenseOutIn(nn.Module):
    """`nn.Dense` with its kernel stored transposed, (features, inputs): the same maths.

    XLA's CPU gemm at a small batch is faster as W x^T with W stored (out, in): the
    RSSM's (2024 -> 3072) GRU layer at batch 16 takes about a third of `x @ W`'s time,
    level at 512 (benchmarks/results/acting_gru_layout.json); with every RSSM layer so,
    acting at 16 envs takes 0.77x the time (benchmarks/results/conv_forward.json). `out_in_params` converts a
    trained Dense's parameters; training keeps `nn.Dense`'s layout, so checkpoints do
    not change."""
    features: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    dot_general: Any = jax.lax.dot_general

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(in_axis=1, out_axis=0),
                            (self.features, x.shape[-1]))
        # W x^T, (features, batch), then transposed: XLA's CPU gemm runs this form fastest
        # at small batch; the barrier keeps XLA from folding the transpose into the dot.
        flat = x.reshape(-1, x.shape[-1]).astype(self.dtype)
        y = self.dot_general(kernel.astype(self.dtype), flat, (((1,), (1,)), ((), ())))
        y = jax.lax.optimization_barrier(y).T.reshape(x.shape[:-1] + (self.features,))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


def out_in_params(dense_params):
    """An `nn.Dense`'s {'kernel' (in, out)[, 'bias']} as `DenseOutIn`'s (kernel (out, in))."""
    out = dict(dense_params)
    out["kernel"] = jnp.asarray(dense_params["kernel"]).T
    return out


def depth_to_space(x, block=2):
    """(N, H, W, C*b*b) -> (N, H*b, W*b, C), channel order (b_row, b_col, C)."""
    n, h, w, c = x.shape
    assert c % (block * block) == 0, f"channels {c} not divisible by {block}^2"
    c_out = c // (block * block)
    x = x.reshape(n, h, w, block, block, c_out)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * block, w * block, c_out)


def upsample_nearest(x, factor=2):
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
    return x.reshape(n, h * factor, w * factor, c)


class ConvBlock(nn.Module):
    """[upsample] -> conv -> [depth_to_space] -> [Norm -> act].

    With `remat` the block is rematerialised in the backward pass except for the conv output
    (checkpoint name 'conv_out'): the backward recomputes only cheap things (the shifted
    views of the matmul conv, the norm, the activation) and memory holds about one tensor
    per layer instead of one per tap plus norm and activation intermediates.
    """

    features: int
    kernel: int
    stride: int = 1
    padding: str = "SAME"
    use_bias: bool = False
    impl: str = "matmul"
    pre: str = "none"       # 'none' | 'upsample'
    post: str = "none"      # 'none' | 'depth_to_space'
    norm: str = "layer"
    act: str = "elu"
    final: bool = False     # no norm / activation
    dtype: Dtype = jnp.float32
    zero_init: bool = False
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        if self.pre == "upsample":
            x = upsample_nearest(x)
        x = Conv(self.features, self.kernel, self.stride, self.padding, self.use_bias, self.impl,
                 self.dtype, self.zero_init, self.matmul_dtype, name="conv")(x)
        x = checkpoint_name(x, "conv_out")
        if self.post == "depth_to_space":
            x = depth_to_space(x, 2)
        if not self.final:
            x = get_act(self.act)(Norm(self.norm, name="norm")(x))
        return x


RematConvBlock = nn.remat(ConvBlock, policy=jax.checkpoint_policies.save_only_these_names("conv_out"))


def conv_block(remat, **kw):
    return (RematConvBlock if remat and not kw.get("final") else ConvBlock)(**kw)


class MLP(nn.Module):
    """`layers` x (Dense(units) -> Norm -> act). Output keeps the compute dtype."""

    layers: int
    units: int
    norm: str = "layer"
    act: str = "elu"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = x.astype(self.dtype)
        for i in range(self.layers):
            x = nn.Dense(self.units, use_bias=self.norm == "none", dtype=self.dtype,
                         name=f"dense{i}")(x)
            x = Norm(self.norm, name=f"norm{i}")(x)
            x = get_act(self.act)(x)
        return x


class Encoder(nn.Module):
    """Four (by default) kxk stride-2 VALID convs, depth d, 2d, 4d, 8d; Norm + act.

    64x64 input -> 31 -> 14 -> 6 -> 2, so depth 48 gives a 2*2*384 = 1536-d embedding
    (DreamerV2). Input: standardised float images (..., H, W, C); output (..., E).
    """

    depth: int = 48
    kernel: int = 4
    stages: int = 4
    norm: str = "layer"
    act: str = "elu"
    conv_impl: str = "matmul"
    remat: bool = True
    dtype: Dtype = jnp.float32
    matmul_dtype: str = "float32"   # "bfloat16": the matmul-form convs' products (acting)

    @nn.compact
    def __call__(self, x):
        assert x.ndim >= 4, f"Encoder expects (..., H, W, C), got shape {x.shape}"
        lead = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:]).astype(self.dtype)
        for i in range(self.stages):
            x = conv_block(self.remat, features=self.depth * 2 ** i, kernel=self.kernel,
                           stride=2, padding="VALID", use_bias=self.norm == "none",
                           impl=self.conv_impl, norm=self.norm, act=self.act, dtype=self.dtype,
                           matmul_dtype=self.matmul_dtype, name=f"block{i}")(x)
        return x.reshape(lead + (-1,))

    @staticmethod
    def embed_size(image_shape, depth, kernel=4, stages=4):
        h, w = image_shape[:2]
        for _ in range(stages):
            h, w = (h - kernel) // 2 + 1, (w - kernel) // 2 + 1
        return h * w * depth * 2 ** (stages - 1)


class Decoder(nn.Module):
    """Feature vector (..., F) -> image mean (..., H, W, C) in float32 (standardised space).

    `channels` are the output channels of the upsampling stages except the last one, whose
    output has `out_shape[-1]` channels; for upsample/depth_to_space the Dense layer maps to
    a (H / 2^stages)^2 x `start_channels` grid. For conv_transpose `channels` are the
    DreamerV2 ones (4d, 2d, d) and the Dense maps to 32d at 1x1.
    """

    out_shape: Sequence[int] = (64, 64, 1)
    kind: str = "depth_to_space"
    depth: int = 48
    start_channels: int = 0       # 0: 4 * depth
    channels: Sequence[int] = ()  # () : (2d, d, d // 2) for upsample/d2s, (4d, 2d, d) for convT
    kernel: int = 3               # conv kernel of upsample / depth_to_space stages
    norm: str = "layer"
    act: str = "elu"
    conv_impl: str = "matmul"     # upsample / depth_to_space convs (conv_transpose: XLA's)
    remat: bool = True            # see ConvBlock (upsample / depth_to_space)
    # A learned per-pixel output bias (the static background, set from data by
    # `train_step.set_decoder_background`) and a zero-initialised last layer: the network
    # then starts at the background and spends its capacity on the small moving objects,
    # instead of first unlearning a random full-frame output (benchmarks/README.md).
    pixel_bias: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, feat):
        if self.kind not in DECODER_KINDS:
            raise ValueError(f"unknown decoder kind {self.kind!r}; expected one of {DECODER_KINDS}")
        lead = feat.shape[:-1]
        x = feat.reshape((-1, feat.shape[-1])).astype(self.dtype)
        h, w, c_out = self.out_shape
        d = self.depth
        act = get_act(self.act)
        bias = self.norm == "none"
        if self.kind == "conv_transpose":
            assert (h, w) == (64, 64), f"conv_transpose decoder is built for 64x64, got {(h, w)}"
            chans = tuple(self.channels) or (4 * d, 2 * d, d)
            assert len(chans) == 3, f"conv_transpose needs 3 hidden channel counts, got {chans}"
            x = nn.Dense(32 * d, dtype=self.dtype, name="in")(x)
            x = x.reshape((-1, 1, 1, 32 * d))
            kernels = (5, 5, 6, 6)
            for i, (k, c) in enumerate(zip(kernels, chans + (c_out,))):
                last = i == len(kernels) - 1
                init = (nn.initializers.zeros if last and self.pixel_bias
                        else nn.initializers.lecun_normal())
                x = nn.ConvTranspose(c, (k, k), strides=(2, 2), padding="VALID",
                                     use_bias=bias or last, kernel_init=init, dtype=self.dtype,
                                     name=f"conv{i}")(x)
                if not last:
                    x = act(Norm(self.norm, name=f"norm{i}")(x))
        else:
            chans = tuple(self.channels) or (2 * d, d, d // 2)
            stages = len(chans) + 1
            r0h, r0w = h // 2 ** stages, w // 2 ** stages
            assert r0h * 2 ** stages == h and r0w * 2 ** stages == w, (
                f"image {(h, w)} is not divisible by 2^{stages}")
            c0 = self.start_channels or 4 * d
            x = nn.Dense(r0h * r0w * c0, use_bias=bias, dtype=self.dtype, name="in")(x)
            x = act(Norm(self.norm, name="norm_in")(x.reshape((-1, r0h, r0w, c0))))
            k = self.kernel
            up = self.kind == "upsample"
            for i, c in enumerate(chans + (c_out,)):
                last = i == stages - 1
                x = conv_block(self.remat, features=c if up else 4 * c, kernel=k,
                               use_bias=bias or last, impl=self.conv_impl,
                               pre="upsample" if up else "none",
                               post="none" if up else "depth_to_space", norm=self.norm,
                               act=self.act, final=last, dtype=self.dtype,
                               zero_init=last and self.pixel_bias, name=f"block{i}")(x)
        assert x.shape[1:] == (h, w, c_out), f"decoder produced {x.shape[1:]}, want {(h, w, c_out)}"
        if self.pixel_bias:
            x = x + self.param("pixel_bias", nn.initializers.zeros, (h, w, c_out),
                               jnp.float32).astype(x.dtype)
        return x.astype(jnp.float32).reshape(lead + (h, w, c_out))
