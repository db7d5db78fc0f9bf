"""DITTO with a behaviour-cloning trust region (issue #18, part 4): its own row, never DITTO.

  ditto_bctr  DITTO (BC init) whose actor loss keeps, for the WHOLE of training,
              bc_weight * mean(-log pi(a_E | s_E)) over the window start states s_E (the
              expert's posterior latents) and the expert's actions there. The public
              driving port of DITTO (DITTO_AV) needed such a term to beat BC once the
              latent reward saturated (SPEC §11).

Start: like DITTO (BC init), the best variant so far, it runs `bc_init_steps` D-BC updates
and `critic_warmup_steps` critic-only updates first, so that `ditto_bctr` against
`ditto_bcinit` measures the trust region alone. `--config.bc_init_steps=0
--config.critic_warmup_steps=0` gives DITTO + trust region from a random actor; with
`--config.bc_weight=0` as well it is DITTO, update for update.
"""
import jax
import jax.numpy as jnp

from ditto_jax.agents import imitation
from ditto_jax.errors import DittoError
from ditto_jax.methods.imagination import DittoBCInit

DEFAULT_BC_WEIGHT = 1.0


def expert_nll(logits, actions):
    """mean_b -log softmax(logits_b)[a_b]: the trust-region term before its weight."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0].mean()


def trust_region_loss(actor_apply, feat, weight):
    """`(actor_params, batch) -> (weight * NLL, metrics)` on the batch's start states."""

    def loss(actor_params, batch):
        logits = actor_apply(actor_params, jax.lax.stop_gradient(feat(batch["start"])))
        nll = expert_nll(logits, batch["action"])
        acc = (jnp.argmax(logits, -1) == batch["action"]).mean()
        return weight * nll, {"trust_nll": nll, "trust_accuracy": acc}
    return loss


class DittoBCTrustRegion(DittoBCInit):
    name, label, order = "ditto_bctr", "DITTO (BC trust region)", 12

    def resolve_config(self, config):
        config = super().resolve_config(config)
        if "bc_weight" not in config:
            config.bc_weight = DEFAULT_BC_WEIGHT
        weight = config.bc_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise DittoError("The BC trust-region weight must be a number >= 0",
                             field="config.bc_weight", expected=">= 0 (e.g. 1.0)", got=weight)
        return config

    def make_step(self, config, **kw):
        actor_apply = imitation.policy_logits(config, kw["num_actions"])
        extra = trust_region_loss(actor_apply, kw["feat"], float(config.bc_weight))
        return imitation.make_bcinit_ditto_step(config, reward_model=self.reward_model(config),
                                                actor_extra_loss=extra, **kw)
