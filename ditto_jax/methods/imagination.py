"""DITTO and its relatives: an actor-critic trained inside the frozen world model.

  ditto         the reward compares imagined latents with the expert's (config.reward:
                maxcos | cosine | l2 | sparse), SPEC §3.
  ditto_bcinit  DITTO whose actor starts from D-BC, then a critic-only warm-up (SPEC §9
                lever); reported as its own row, never as DITTO.
  dgail         the same actor-critic with a discriminator reward plugged in (acme's AIL
                builder: an RL agent plus a learned reward), SPEC §4.

Batch (sampled on device): {"start": RSSM state dict (B, ...) = expert posterior s^E_t,
"expert": (B, H+1, D) compared latent part of s^E_t..s^E_{t+H}}; ditto_bcinit adds
"action" (B,), the expert action at each start.
"""
import jax
import jax.numpy as jnp

from ditto_jax.errors import DittoError
from ditto_jax.methods.base import Method, WindowTable

LATENT_REWARDS = ("maxcos", "cosine", "l2", "sparse")


class Ditto(Method):
    name, label, order = "ditto", "DITTO", 10
    with_disc = False

    def resolve_config(self, config):
        if config.reward not in LATENT_REWARDS:
            raise DittoError("DITTO needs a latent reward", field="config.reward",
                             expected=" | ".join(LATENT_REWARDS), got=config.reward)
        return config

    def init(self, config, ctx, key):
        from ditto_jax.agents import imitation
        return imitation.init_agent_state(config, ctx.feat_dim, ctx.part_dim,
                                          ctx.num_actions, key, disc=self.with_disc)

    def make_data(self, config, ctx, store, latents):
        data = dict(latents)
        data.update(WindowTable.build(store, int(config.horizon) + 1))
        data["action"] = store.action.astype("int32")
        return data

    def sample(self, config, data, key):
        from ditto_jax.agents.rewards import latent_part
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
        from ditto_jax.agents import imitation
        return imitation.make_imagination_step(config, **kw)

    def train_step(self, config, ctx):
        from ditto_jax.models.rssm import get_feat
        from ditto_jax.models.world_model import WorldModel
        model = ctx.wm_model

        def step(state, batch, rng, wm_params):
            def img_step(s, a, k):
                return model.apply(wm_params, s, a, k, method=WorldModel.img_step)
            inner = self.make_step(config, img_step=img_step, feat=get_feat,
                                   num_actions=ctx.num_actions, action_dim=ctx.action_dim)
            return inner(state, batch, rng)
        return step

    def actor_apply(self, config, ctx):
        from ditto_jax.agents import imitation
        return imitation.policy_logits(config, ctx.num_actions)


class DittoBCInit(Ditto):
    name, label, order = "ditto_bcinit", "DITTO (BC init)", 11

    def extend_batch(self, batch, data, start):
        return dict(batch, action=data["action"][start])

    def make_step(self, config, **kw):
        from ditto_jax.agents import imitation
        return imitation.make_bcinit_ditto_step(config, **kw)


class DGail(Ditto):
    name, label, order = "dgail", "D-GAIL", 20
    with_disc = True

    def resolve_config(self, config):
        # The reward is the discriminator's: recorded as such in config.json.
        if config.reward != "gail":
            config.reward = "gail"
        return config

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
