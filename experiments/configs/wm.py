"""World-model configs. `--config=experiments/configs/wm.py:PRESET`, PRESET in paper | small | tiny.

ml_collections config_flags calls `get_config(config_string)` with the text after the colon.

Groups:
  model.*  WorldModel fields (ditto_jax/models/world_model.py)
  loss.*   LossConfig fields
  optim.*  optimizer (clip_by_global_norm + adam / adamw)
  train.*  loop settings read by the training driver

Device-aware defaults (ditto_jax/core/devices.py): model.conv_impl="auto", model.frame_chunk=-1
and train.compute_dtype="auto" resolve from jax.default_backend() when training starts
(CPU: matmul convs, 250-frame remat chunks, float32; GPU/TPU: XLA convs, no chunking
unless memory needs it, bfloat16 activations with float32 parameters). Set a value to
pin it, e.g. --config.model.conv_impl=matmul --config.train.compute_dtype=float32.
"""
import ml_collections

PRESETS = ("paper", "small", "tiny")


def _base():
    c = ml_collections.ConfigDict()
    c.preset = ""

    c.model = ml_collections.ConfigDict(dict(
        action_dim=18,            # one-hot padded to 18 (full Atari set), as in the paper
        cnn_depth=48,
        cnn_kernel=4,
        decoder="depth_to_space",  # conv_transpose | upsample | depth_to_space
        decoder_depth=0,          # 0: cnn_depth
        decoder_start_channels=0,  # 0: 4 * depth at 4x4
        decoder_channels=(),      # (): (2d, d, d/2) at 8, 16, 32 px
        decoder_kernel=3,
        decoder_pixel_bias=False,  # learned background (from data) + zero-init last layer
        conv_impl="auto",         # auto | matmul | lax: how convs are computed (auto: matmul
                                  # on CPU, lax elsewhere; benchmarks/README.md)
        deter=1024,
        hidden=1000,
        stoch=32,
        classes=32,
        latent="sample",          # sample (DreamerV2 straight-through) | probs (relaxed)
        unimix=0.0,               # 0.0: plain categoricals as in DreamerV2 / SPEC §2
        scan_unroll=1,
        scan_split_transpose=False,
        norm="layer",
        act="elu",
        reward_head=False,
        cont_head=False,
        head_layers=2,
        head_units=400,
        remat=False,              # conv blocks keep only conv outputs for the backward
        frame_chunk=-1,           # encoder/decoder over N frames at a time, rematerialised;
                                  # 0: no chunks; -1 auto: 250 on CPU, none on GPU/TPU
                                  # unless the batch's activations would not fit
    ))

    c.loss = ml_collections.ConfigDict(dict(
        image_weight=1.0,         # on [-0.5, 0.5] pixels. The authors' 2.0 x 0.5 x SSE on
                                  # per-game standardised pixels equals (255/sigma)^2 here
                                  # (Pong ~29): image_scale=authors applies it (SPEC §2)
        image_scale="none",       # none | authors
        beta=0.1,
        alpha=0.8,                # weight of KL(sg(q)||p), which trains the prior
        free_nats=0.0,            # DreamerV2 Atari: 0 (DreamerV3 uses 1.0)
        recon="object_weighted",  # mse | object_weighted | motion_weighted | object_motion
        object_weight=20.0,
        object_threshold=0.05,    # |x - background| > 0.05 * 255
        background="batch",       # median frame of the batch | of each sequence
        reward_weight=1.0,
        cont_weight=1.0,
    ))

    c.data = ml_collections.ConfigDict(dict(
        size=(),                  # (H, W) to resize frames to, e.g. (64, 64) for RLU's 84x84
    ))

    c.optim = ml_collections.ConfigDict(dict(
        name="adam",              # adam | adamw
        lr=3e-4,
        eps=1e-5,
        clip=200.0,
        weight_decay=0.0,         # adamw only
    ))

    c.train = ml_collections.ConfigDict(dict(
        batch_size=50,
        seq_len=50,
        steps=100_000,
        log_every=100,
        eval_every=2_000,
        save_every=5_000,
        keep_checkpoints=3,
        val_episodes=2,           # episodes held out for validation metrics
        seed=0,
        compute_dtype="auto",     # auto | float32 | bfloat16 (activations only; params stay
                                  # fp32); auto: float32 on CPU, bfloat16 on GPU/TPU
        strip_every=2_000,        # open-loop prediction strip (5 context + 10 imagined)
        time_limit_s=0.0,         # > 0: stop (and save) at the first log/save step after
                                  # this many seconds of training: a clock-based budget
    ))
    # Optional experiment tracking, off by default (metrics.jsonl and TensorBoard always).
    c.tracking = ml_collections.ConfigDict(dict(
        wandb_project="",         # e.g. "ditto": also log to Weights & Biases (pip install wandb)
        wandb_entity="",
        wandb_name="",
        wandb_group="",
        wandb_mode="",            # "" | online | offline | disabled
    ))
    return c


def get_config(config_string="small"):
    preset = (config_string or "small").strip()
    if preset not in PRESETS:
        raise ValueError(f"unknown wm preset {preset!r}; expected one of {PRESETS}")
    c = _base()
    c.preset = preset
    if preset == "paper":
        pass  # _base() holds the paper sizes (SPEC §2)
    elif preset == "small":
        # SPEC §8 CPU prototype scale: encoder 8/16/32/64, deter 256, 16x16 latents,
        # depth-to-space decoder, batch 16 x 32.
        # Decoder depth 16 (4x4x64 -> 8x8x32 -> 16x16x16 -> 32x32x8 -> 64x64x1): twice the
        # encoder's width, because the small objects live in the high-resolution layers;
        # 1.5M parameters in all (the prototype had 1.65M).
        c.model.update(cnn_depth=8, decoder_depth=16, deter=256, hidden=256, stoch=16,
                       classes=16, head_units=256)
        c.train.update(batch_size=16, seq_len=32, steps=5_000, log_every=50,
                       eval_every=500, save_every=1_000, strip_every=500)
    elif preset == "tiny":
        # A few thousand parameters, for tests. batch 8 divides over 8 devices.
        c.model.update(cnn_depth=2, deter=16, hidden=16, stoch=4, classes=4,
                       decoder_start_channels=8, decoder_channels=(4, 4, 2),
                       head_layers=1, head_units=16)
        c.optim.lr = 1e-3  # so a 30-step test run shows learning
        c.train.update(batch_size=8, seq_len=8, steps=30, log_every=5, eval_every=10,
                       save_every=10, keep_checkpoints=2, val_episodes=1, strip_every=10)
    return c
