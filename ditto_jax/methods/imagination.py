"""DITTO and its relatives: an actor-critic trained inside the frozen world model.

  ditto         the reward compares imagined latents with the expert's (config.reward:
                one of agents/rewards.py LATENT_REWARDS), SPEC §3.
  ditto_bcinit  DITTO whose actor starts from D-BC, then a critic-only warm-up (SPEC §9
                lever); reported as its own row, never as DITTO.
  dgail         the same actor-critic with a discriminator reward plugged in (acme's AIL
                builder: an RL agent plus a learned reward), SPEC §4.

Each method owns its config block: `config_fields` are the fields it reads beyond the
shared ones, checked by `resolve_config` against the enums of the code that uses them
(agents/rewards.py, agents/imitation.py); a method's config.json holds only its own
block. The reward is a model object (`reward_model`) handed to the imagination step.

Batch (sampled on device): {"start": RSSM state dict (B, ...) = expert posterior s^E_t,
"expert": (B, H+1, D) compared latent part of s^E_t..s^E_{t+H}}; ditto_bcinit adds
"action" (B,), the expert action at each start.
"""
import jax
import jax.numpy as jnp

from ditto_jax.agents import imitation
from ditto_jax.agents.discriminator import DiscriminatorReward
from ditto_jax.agents.imitation import FIRST_STEP
from ditto_jax.agents.rewards import LATENT_PARTS, LATENT_REWARDS, LatentReward, latent_part
from ditto_jax.errors import DittoError
from ditto_jax.methods.base import Method, WindowTable
from ditto_jax.models.rssm import get_feat
from ditto_jax.models.world_model import WorldModel

# Fields of the latent reward and of the discriminator: each method keeps its own.
LATENT_REWARD_FIELDS = ("reward", "sparse_threshold")
DISCRIMINATOR_FIELDS = ("disc_units", "disc_layers", "disc_lr", "collapse_window")


def _check_choice(config, key, allowed, message, default=None):
    if config.get(key, default) not in allowed:
        raise DittoError(message, field=f"config.{key}", expected=" | ".join(allowed),
                         got=config.get(key))


def _drop(config, keys):
    for k in keys:
        if k in config:
            del config[k]
    return config


class Ditto(Method):
    name, label, order = "ditto", "DITTO", 10

    def resolve_config(self, config):
        _check_choice(config, "reward", LATENT_REWARDS, "DITTO needs a latent reward")
        _check_choice(config, "latent", LATENT_PARTS, "Unknown latent part")
        _check_choice(config, "first_step", FIRST_STEP, "Unknown first-step rule",
                      default="sample")
        return _drop(config, DISCRIMINATOR_FIELDS)

    def reward_model(self, config):
        return LatentReward(config.reward, config.sparse_threshold)

    def init(self, config, ctx, key):
        return imitation.init_imagination_state(config, ctx.feat_dim, ctx.part_dim,
                                                ctx.num_actions, key,
                                                self.reward_model(config))

    def make_data(self, config, ctx, store, latents):
        data = dict(latents)
        data.update(WindowTable.build(store, int(config.horizon) + 1))
        data["action"] = store.action.astype("int32")
        return data

    def sample(self, config, data, key):
        horizon = int(config.horizon)
        start = WindowTable.sample(data, key, int(config.batch_size))
        index = start[:, None] + jnp.arange(horizon + 1)[None, :]          # (B, H+1)
        latents = {k: data[k] for k in ("deter", "stoch", "logits")}
        batch = {"start": jax.tree.map(lambda x: x[start], latents),
                 "expert": latent_part(jax.tree.map(lambda x: x[index], latents),
                                       config.latent)}
        return self.extend_batch(batch, data, start)

    def extend_batch(self, batch, data, start):
        return batch

    def make_step(self, config, **kw):
        return imitation.make_imagination_step(config, reward_model=self.reward_model(config),
                                               **kw)

    def train_step(self, config, ctx):
        # The frozen world model's matmuls in imagination: float32, or bfloat16 operands
        # summed in float32 (config.imagine_matmul; networks.bf16_dot_general).
        model = ctx.wm_model.clone(matmul_dtype=config.get("imagine_matmul", "float32"))

        def step(state, batch, rng, wm_params):
            def img_step(s, a, k):
                return model.apply(wm_params, s, a, k, method=WorldModel.img_step)
            inner = self.make_step(config, img_step=img_step, feat=get_feat,
                                   num_actions=ctx.num_actions, action_dim=ctx.action_dim)
            return inner(state, batch, rng)
        return step

    def actor_apply(self, config, ctx):
        return imitation.policy_logits(config, ctx.num_actions)


class DittoBCInit(Ditto):
    name, label, order = "ditto_bcinit", "DITTO (BC init)", 11

    def extend_batch(self, batch, data, start):
        return dict(batch, action=data["action"][start])

    def make_step(self, config, **kw):
        return imitation.make_bcinit_ditto_step(
            config, reward_model=self.reward_model(config), **kw)


class DGail(Ditto):
    name, label, order = "dgail", "D-GAIL", 20
    state_version = 3          # the discriminator's params and optimiser in one `disc`

    def resolve_config(self, config):
        _check_choice(config, "latent", LATENT_PARTS, "Unknown latent part")
        # A learned reward has no closed form for every action's successor.
        _check_choice(config, "first_step", ("sample",),
                      "D-GAIL's discriminator reward needs first_step=sample", default="sample")
        return _drop(config, LATENT_REWARD_FIELDS)

    def reward_model(self, config):
        return DiscriminatorReward(config.disc_units, config.disc_layers, config.disc_lr,
                                   config.eps, config.clip)

    # GAIL's equilibrium is D = 1/2 on both: a discriminator that still tells the agent's
    # imagined transitions from the expert's by more than this (mean D over the batch) is
    # winning, so the policy is not imitating, whether or not it saturates.
    DOMINANCE_GAP = 0.5

    def host_metrics(self, config, metrics):
        """Failure alarms of the adversarial game (SPEC §4), from the logged update:

        disc_collapsed  the discriminator saturates (D(E) > 0.99, D(agent) < 0.01: the
                        agent's reward is ~0 everywhere) or learns nothing (D(E) = D(agent))
        disc_dominant   D(E) - D(agent) > DOMINANCE_GAP: it separates agent from expert
                        without saturating. The demo's D-GAIL that played at random level
                        (D(E) 0.79, D(agent) 0.19; SPEC §11) raised only this one.
        disc_alarm      either
        """
        d_exp, d_agent = float(metrics["disc_expert"]), float(metrics["disc_agent"])
        collapsed = (d_exp > 0.99 and d_agent < 0.01) or abs(d_exp - d_agent) < 1e-3
        dominant = d_exp - d_agent > self.DOMINANCE_GAP
        return {"disc_collapsed": float(collapsed), "disc_dominant": float(dominant),
                "disc_gap": d_exp - d_agent, "disc_alarm": float(collapsed or dominant)}
