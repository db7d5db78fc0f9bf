"""D-GAIL's reward model: a discriminator on latent transitions, with its own optimiser
(SPEC §4; acme's AIL builder: an RL agent plus a learned reward).

It plugs into DITTO's imagination step (agents/imitation.py) in place of the latent
reward (agents/rewards.py `LatentReward`, whose interface it shares). Each update it
takes one gradient step on the binary cross-entropy of expert pairs (h^E_k, h^E_{k+1})
against the agent's imagined pairs (h_k, h_{k+1}), and gives the policy the reward
sigmoid(D) of the agent's pairs under the discriminator BEFORE that step.
"""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ditto_jax.agents.actor_critic import MLP
from ditto_jax.agents.imitation import ActorCriticState


class Discriminator(nn.Module):
    """Logits on latent transition pairs (h_t, h_{t+1})."""
    units: int = 128
    layers: int = 4

    @nn.compact
    def __call__(self, pair):
        return MLP(self.units, self.layers, 1)(pair)[..., 0]


@flax.struct.dataclass
class DiscriminatorState:
    params: dict
    opt: optax.OptState


@flax.struct.dataclass
class AdversarialState(ActorCriticState):
    """D-GAIL's train state: the actor-critic's and its discriminator's."""
    disc: DiscriminatorState

    def legacy_tree(self):
        # ditto_jax <= e052609 kept the discriminator in two flat fields.
        tree = super().legacy_tree()
        tree.update(disc=self.disc.params, disc_opt=self.disc.opt)
        return tree

    def from_legacy(self, tree):
        tree = dict(tree, disc=DiscriminatorState(params=tree["disc"], opt=tree["disc_opt"]))
        return super().from_legacy(tree)


def optimizer(lr, eps, clip):
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, eps=eps))


def _pairs(latents):
    """(H+1, B, D) -> (H, B, 2D): consecutive latents side by side."""
    return jnp.concatenate([latents[:-1], latents[1:]], -1)


class DiscriminatorReward:
    """The learned reward. `init` extends an `ActorCriticState` to an `AdversarialState`."""
    learned = True

    def __init__(self, units, layers, lr, eps, clip):
        self.net = Discriminator(units, layers)
        self.opt = optimizer(lr, eps, clip)

    def init(self, state, key, part_dim):
        params = self.net.init(key, jnp.zeros((1, 2 * part_dim)))
        fields = {f: getattr(state, f) for f in state.__dataclass_fields__}
        return AdversarialState(**fields, disc=DiscriminatorState(params,
                                                                  self.opt.init(params)))

    def rewards(self, state, agent, expert):
        agent_pairs, expert_pairs = _pairs(agent), _pairs(expert)
        disc = state.disc

        def loss_fn(params):
            e_logit = self.net.apply(params, expert_pairs)
            a_logit = self.net.apply(params, agent_pairs)
            loss = (optax.sigmoid_binary_cross_entropy(e_logit, 1.0).mean()
                    + optax.sigmoid_binary_cross_entropy(a_logit, 0.0).mean())
            return loss, (jax.nn.sigmoid(e_logit).mean(), jax.nn.sigmoid(a_logit).mean())

        (loss, (d_exp, d_agent)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            disc.params)
        updates, opt_state = self.opt.update(grads, disc.opt, disc.params)
        new = DiscriminatorState(optax.apply_updates(disc.params, updates), opt_state)
        # GAIL's policy reward: sigmoid(D) of the agent's transitions.
        rewards = jax.nn.sigmoid(self.net.apply(disc.params, agent_pairs))
        metrics = {"disc_loss": loss, "disc_expert": d_exp, "disc_agent": d_agent}
        return state.replace(disc=new), rewards, metrics
