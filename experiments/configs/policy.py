"""Imitation-stage configs: `--config=experiments/configs/policy.py:PRESET`.

Presets: `paper` (SPEC §3 defaults), `small` (CPU scale), `tiny` (tests).
Paper-vs-code choices are fields: `latent` (authors' code: h; paper text: z)
and `standardize_advantages` (authors' code: on).
"""
import ml_collections

PRESETS = ("paper", "small", "tiny")


def get_config(preset="small"):
    if preset not in PRESETS:
        raise KeyError(preset)
    c = ml_collections.ConfigDict()
    c.method = "ditto"              # ditto | dbc | dgail | bc
    # Imagination actor-critic (DITTO / D-GAIL).
    c.reward = "maxcos"             # maxcos | cosine | l2 | sparse (DITTO's latent reward,
                                    # agents/rewards.py; D-GAIL's is its discriminator)
    c.latent = "h"                  # h | z | h+z: which part of the state is compared
    c.sparse_threshold = 0.5        # L2 radius of the `sparse` indicator, in latent units
    c.horizon = 15
    c.batch_size = 512              # B_ac: expert start states per update
    c.gamma = 0.95
    c.lam = 0.95
    c.entropy = 0.05                # eta
    c.entropy_final = -1.0          # >= 0: eta moves linearly to this over
    c.entropy_decay_steps = 0       #   entropy_decay_steps updates (< 0: constant eta)
    c.first_step = "sample"         # sample (REINFORCE) | all_actions (exact expected
                                    # gradient over every action at the first step)
    c.imagine_matmul = "float32"    # float32 | bfloat16: the frozen world model's matmuls
                                    # in imagination; bfloat16 rounds their operands and
                                    # sums in float32 (a TPU's default precision): about
                                    # 0.65x the paper update's time on this AMX CPU, an
                                    # opt-in change of the maths (README, "bfloat16")
    # DITTO (BC init), method ditto_bcinit: D-BC updates, then critic-only warm-up.
    c.bc_init_steps = 500
    c.critic_warmup_steps = 200
    # DITTO (BC trust region), method ditto_bctr: the same start, then DITTO's actor loss
    # + bc_weight * -log pi(a_E | s_E) on the window start states for all of training.
    c.bc_weight = 1.0
    c.lr = 3e-4
    c.eps = 1e-5
    c.clip = 100.0
    c.target_every = 100
    c.standardize_advantages = True
    c.actor_units, c.actor_layers = 256, 8
    c.critic_units, c.critic_layers = 256, 8
    # D-GAIL discriminator (SPEC §4: MLP 4 x 128 on (h_t, h_{t+1})).
    c.disc_units, c.disc_layers = 128, 4
    c.disc_lr = 3e-4
    c.collapse_window = 50          # updates over which a collapse is judged
    # D-BC and pixel BC.
    c.dbc_entropy = 0.1
    c.bc_frame_stack = 4
    c.bc_depth = 16
    c.bc_batch_size = 256
    # Data.
    c.expert_episodes = 0           # N_E: 0 = all episodes in the expert dataset
    c.expert_selection = "first"    # first | top (by episode_return)
    c.heldout_episodes = 1          # expert episodes kept out for action accuracy
    c.expert_resize = False         # resize expert frames to the world model's size
    # Loop.
    c.steps = 5000
    c.log_every = 50
    c.save_every = 500
    c.keep_checkpoints = 2
    c.eval_every = 1000
    c.eval_episodes = 8
    c.eval_envs = 8
    c.eval_protocol = "ditto"
    # Offline probes on held-out expert starts (stages/policy_probes.py), every
    # `probe_every` updates and at the last (0: off): reward spread (expert vs a deviating
    # first action vs random vs the policy) and the Eq. 7 drift after `drift_length`
    # imagined policy steps.
    c.probe_every = 500
    c.probe_batch = 32
    c.drift_length = 50
    c.eval_max_steps = 27_000
    c.time_limit_s = 0.0            # > 0: stop (and save) at the first log/save step
                                    # after this many seconds of training
    c.seed = 0
    # Optional experiment tracking, off by default (metrics.jsonl and TensorBoard always).
    c.tracking = ml_collections.ConfigDict(dict(
        wandb_project="", wandb_entity="", wandb_name="", wandb_group="", wandb_mode=""))

    if preset == "paper":
        c.steps = 100_000
        c.eval_every = 5000
        c.eval_episodes = 10
        c.clip = 100.0
    elif preset == "small":
        c.batch_size = 256
        c.actor_units, c.actor_layers = 256, 4
        c.critic_units, c.critic_layers = 256, 4
        c.steps = 3000
        c.eval_every = 1000
    elif preset == "tiny":
        c.batch_size = 16
        c.horizon = 5
        c.actor_units, c.actor_layers = 32, 2
        c.critic_units, c.critic_layers = 32, 2
        c.disc_units, c.disc_layers = 32, 2
        c.bc_depth = 4
        c.bc_batch_size = 16
        c.steps = 20
        c.log_every = 5
        c.save_every = 10
        c.eval_every = 20
        c.eval_episodes = 2
        c.eval_envs = 2
        c.eval_max_steps = 200
        c.probe_every = 0
        c.probe_batch = 8
        c.drift_length = 8
    return c
