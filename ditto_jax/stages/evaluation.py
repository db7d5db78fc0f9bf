"""Real-environment evaluation: vectorised rollouts and the SPEC §6 scores.

`run_episodes` plays any `agents.acting.Agent` (init(num_envs) -> carry;
act(carry, obs, is_first, key) -> (carry, actions)) in a vector env.
"""
import math
import time

import numpy as np

# SPEC §6: human and random reference returns.
HUMAN_RANDOM = {
    "pong": (14.6, -20.7),
    "breakout": (30.5, 1.7),
    "mspacman": (6951.6, 307.3),
    "beamrider": (16926.5, 363.9),
    "qbert": (13455.0, 163.9),
    "spaceinvaders": (1668.7, 148.0),
}


def normalized(score, low, high):
    if low is None or high is None or math.isclose(high, low):
        return None
    return (score - low) / (high - low)


def summarize(returns, lengths, *, game, protocol, expert_return=None, random_return=None,
              max_steps=None, extra=None):
    """Mean return +- standard error and the normalised scores (one definition everywhere).

    expert_normalized_mean = (mean return - random) / (expert - random), where
        `expert_return` and
        `random_return` must be MEASURED under the same protocol and episode cap as
        `returns` (`reference_returns`); None when either is missing. The published
        full-game random score is never substituted: on capped episodes it is meaningless.
    human_normalized = (return - random_published) / (human - random_published) with
        SPEC §6's full-game references; None when any episode was cut by `max_steps`.
    """
    returns = np.asarray(returns, np.float64)
    n = len(returns)
    mean = float(returns.mean()) if n else float("nan")
    se = float(returns.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    human, rand = HUMAN_RANDOM.get(game, (None, None))
    capped = bool(max_steps) and any(int(x) >= int(max_steps) for x in lengths)
    result = {
        "game": game, "protocol": protocol, "episodes": n,
        "return_mean": mean, "return_se": se,
        "returns": returns.tolist(), "lengths": [int(x) for x in lengths],
        "length_mean": float(np.mean(lengths)) if n else float("nan"),
        "max_steps": None if max_steps is None else int(max_steps),
        "capped_episodes": int(sum(int(x) >= int(max_steps) for x in lengths))
        if max_steps else 0,
        "expert_return": expert_return, "random_return": random_return,
        "expert_normalized_mean": normalized(mean, random_return, expert_return),
        "human_normalized": None if capped else normalized(mean, rand, human),
    }
    result.update(extra or {})
    return result


OVERLAP_MIN_ENVS = 4  # fewer envs are played as one group (`evaluate_agent`)


def run_episodes(make_vec_env, agent, *, episodes, num_envs, seed=0, max_steps=27_000,
                 record_first=False, progress=None, key=None, observer=None, overlap=False):
    """Runs until `episodes` episodes finish; returns (returns, lengths, frames of ep 0).

    Envs that would start an episode beyond the requested count are ignored, so
    the result does not favour short episodes. Uses NEXT_STEP autoreset: the step
    after a done ignores the action and returns the next episode's first frame.

    An agent with `select(carry, rows)` stops being computed on envs whose episodes are
    over: once at most half of its batch rows still play, its batch shrinks to the next
    power of two above the envs still playing (10 -> 4 -> 2 -> 1), which bounds the
    recompilations; those envs keep stepping with action 0, uncounted. Each env's episode
    is played by the same maths, but its sampling noise comes from another row of the
    step's key once the batch has shrunk.

    overlap: play the envs as two groups, each its own vector env with half the envs and
    half the episodes, taking turns: while the device computes one group's actions
    (`agent.act_async`), the other group's emulators step. Env i gets seed + i either
    way, so with as many envs as episodes every env plays the same episode as in one
    group (the sampling noise comes from the group's own keys). It pays where the
    emulators step in Python on one core (`sync` envs, which on-policy agreement needs;
    `evaluate_agent` turns it on there): evaluation takes 0.8x the time
    (benchmarks/eval_overlap.py); the `native` vector env steps in its own threads and
    gains nothing. An observer must then `fork` one copy per group and `merge` them.
    """
    import jax
    num_envs = max(1, min(num_envs, episodes))
    key = jax.random.key(seed) if key is None else key
    overlap = bool(overlap) and num_envs >= 2
    if overlap and hasattr(agent, "bind"):
        raise ValueError("overlap needs an agent that does not read the emulators (`bind`): "
                         "both groups share it")
    sizes = [num_envs // 2, num_envs - num_envs // 2] if overlap else [num_envs]
    quotas = [episodes // 2, episodes - episodes // 2] if overlap else [episodes]
    observers = ([observer.fork(), observer.fork()] if overlap and observer is not None
                 else [observer] * len(sizes))
    counted, envs = [0], []

    def report():
        counted[0] += 1
        if progress is not None:
            progress(counted[0], episodes, time.perf_counter() - t0)

    t0 = time.perf_counter()
    try:
        for n in sizes:
            envs.append(make_vec_env(n))
        offsets = np.cumsum([0] + sizes[:-1])
        groups = [_play_group(env, agent, observer_k, episodes=quota, seed=seed + int(off),
                              max_steps=max_steps, key=jax.random.fold_in(key, k)
                              if len(envs) > 1 else key, record=record_first and k == 0,
                              report=report)
                  for k, (env, quota, observer_k, off) in enumerate(zip(envs, quotas, observers,
                                                                     offsets))]
        results = [None] * len(groups)
        live = list(range(len(groups)))
        while live:  # round robin: each turn ends where a group waits on the device
            for k in list(live):
                try:
                    next(groups[k])
                except StopIteration as stop:
                    results[k] = stop.value
                    live.remove(k)
        if observer is not None and len(envs) > 1:
            for part in observers:
                observer.merge(part)
        returns = [r for res in results for r in res[0]]
        lengths = [n for res in results for n in res[1]]
        return returns, lengths, results[0][2]
    finally:
        for env in envs:
            env.close()


def _play_group(env, agent, observer, *, episodes, seed, max_steps, key, record, report):
    """One group of `run_episodes`: a generator that yields after dispatching each step's
    actions (the device computes them meanwhile) and returns (returns, lengths, frames)."""
    import jax
    num_envs = env.num_envs
    for hooked in (agent, observer):
        if hasattr(hooked, "bind"):  # scripted experts read the emulators themselves
            hooked.bind(env, seed)
    asynchronous = hasattr(agent, "act_async")
    obs, _ = env.reset(seed=seed)
    carry = agent.init(num_envs)
    slots = np.arange(num_envs)   # the env each batch row of the agent plays
    is_first = np.ones(num_envs, bool)
    ep_return = np.zeros(num_envs)
    ep_length = np.zeros(num_envs, np.int64)
    started = num_envs            # episodes begun so far
    active = np.ones(num_envs, bool)
    slot_of_episode0 = 0
    returns, lengths, frames = [], [], []
    recording = record
    needs_reset = np.zeros(num_envs, bool)
    while active.any() and episodes > 0:
        key, step_key = jax.random.split(key)
        full = len(slots) == num_envs   # no row dropped yet: no copy of the frames
        args = (carry, obs if full else obs[slots], is_first if full else is_first[slots],
                step_key)
        if asynchronous:
            carry, acted, probs = agent.act_async(*args)
        else:
            carry, acted = agent.act(*args)
            probs = getattr(agent, "last_probs", None)
        yield  # the other group's emulators step while the device computes these actions
        actions = np.zeros(num_envs, np.int64)   # envs no longer played: action 0
        actions[slots] = np.asarray(acted)
        if observer is not None:  # before the step: the state the learner acts in
            if probs is not None and not full:
                probs, rows = np.zeros((num_envs,) + probs.shape[1:], np.float32), probs
                probs[slots] = np.asarray(rows)
            observer.observe(obs, is_first, actions, counted=active & ~needs_reset,
                             probs=probs)
        if recording:
            frames.append(np.asarray(obs[slot_of_episode0]))
        obs, reward, terminated, truncated, _ = env.step(actions)
        ep_return += np.where(needs_reset, 0.0, reward)
        ep_length += ~needs_reset
        is_first = needs_reset.copy()
        done = (terminated | truncated | (ep_length >= max_steps)) & ~needs_reset
        needs_reset = np.zeros(num_envs, bool)
        for i in np.flatnonzero(done & active):
            returns.append(float(ep_return[i]))
            lengths.append(int(ep_length[i]))
            if recording and i == slot_of_episode0:
                frames.append(np.asarray(obs[i]))
                recording = False
            report()
            if started < episodes:
                started += 1
            else:
                active[i] = False
            ep_return[i], ep_length[i] = 0.0, 0
        # A cap we impose ourselves (not the env's) needs an explicit reset, of the
        # capped envs only: resetting all of them would throw away the episodes still
        # running in the others, and those are more often the long ones.
        capped = done & ~(terminated | truncated)
        if capped.any():
            obs, _ = env.reset(seed=seed + started * 7919, mask=capped)
            is_first |= capped
        needs_reset = done & ~capped
        if len(returns) >= episodes:
            break
        playing = int(active.sum())
        size = 1 << max(playing - 1, 0).bit_length()   # a power of two >= playing
        if hasattr(agent, "select") and size <= len(slots) // 2:
            # Every env still playing has a row; fill up with rows of finished ones.
            done_rows = slots[~active[slots]][:size - playing]
            new = np.sort(np.concatenate([np.flatnonzero(active), done_rows]))
            carry = agent.select(carry, np.searchsorted(slots, new))
            slots = new
    return returns[:episodes], lengths[:episodes], (np.stack(frames) if frames else None)


# ------------------------------------------------------------------ scripted experts
def expert_spec_of(policy):
    """The scripted policy that can be asked for its action in any emulator state, from a
    dataset's recorded `policy` field; None when there is none (random play, RL
    Unplugged, an unknown policy)."""
    if not policy:
        return None
    policy = str(policy)
    if policy in ("expert", "tracker") or ":" in policy:
        return policy
    return None


class ExpertAgreement:
    """On-policy expert agreement, the direct measure of covariate shift.

    In every state the LEARNER visits (a `sync` vector env), the scripted expert is asked
    what it would do; agreement = fraction of counted steps where the learner's action is
    the expert's. Agreement on expert states (held-out accuracy) cannot see covariate
    shift; this can.

    When the learner exposes pi(.|s) (`probs`, (num_envs, A), as the trained-policy agents
    do), the same states also give:
    - `expert_prob_on_policy`: E[pi(a_E|s)] over the learner's own states;
    - `argmax_agreement_on_policy`: how often argmax pi is the expert's action there.
    Under sampled play, agreement estimates the first; a greedy policy in these same states
    would score the second. A gap between them says the errors are sampling noise, which
    greedy play removes; no gap says the errors are the policy's confident choices.
    """

    def __init__(self, spec, game, num_actions):
        self.spec, self.game, self.num_actions = spec, game, num_actions
        self.agree = self.total = 0
        self.prob_sum, self.argmax_agree, self.with_probs = 0.0, 0, False

    def fork(self):
        """A fresh, unbound copy for one group of envs (`run_episodes(overlap=...)`)."""
        return ExpertAgreement(self.spec, self.game, self.num_actions)

    def merge(self, other):
        """Adds the counts of a fork that observed other envs."""
        self.agree += other.agree
        self.total += other.total
        self.prob_sum += other.prob_sum
        self.argmax_agree += other.argmax_agree
        self.with_probs = self.with_probs or other.with_probs

    def bind(self, env, seed):
        from ditto_jax.agents.acting import ScriptedAgent  # jax: kept out of `ditto --help`
        self.inner = ScriptedAgent(self.spec, self.game, self.num_actions)
        self.inner.bind(env, seed)

    def observe(self, obs, is_first, actions, counted, probs=None):
        _, expert = self.inner.act(None, obs, is_first, None)
        expert = np.asarray(expert)
        for i, (policy, a) in enumerate(zip(self.inner.policies, actions)):
            if hasattr(policy, "note_action"):  # the learner's action is the one taken
                policy.note_action(int(a))
        counted = np.asarray(counted, bool)
        self.agree += int(((expert == actions) & counted).sum())
        self.total += int(counted.sum())
        if probs is not None:
            probs = np.asarray(probs, np.float64)
            assert probs.shape == (len(expert), self.num_actions), (
                f"probs must be (num_envs, num_actions) = {(len(expert), self.num_actions)}, "
                f"got {probs.shape}")
            p_expert = probs[np.arange(len(expert)), expert]
            self.prob_sum += float(p_expert[counted].sum())
            self.argmax_agree += int(((probs.argmax(-1) == expert) & counted).sum())
            self.with_probs = True

    def result(self):
        out = {"expert_agreement": self.agree / self.total if self.total else None,
               "expert_agreement_steps": self.total, "expert_agreement_with": self.spec}
        if self.with_probs and self.total:  # the agent reports pi(.|s) at every step
            out.update(expert_prob_on_policy=self.prob_sum / self.total,
                       argmax_agreement_on_policy=self.argmax_agree / self.total)
        return out


def reference_returns(game, *, protocol, max_steps, episodes, seed, num_envs=8, size=(64, 64),
                      expert_spec=None, progress=None):
    """Random play and (if there is a scripted expert) the expert, MEASURED under exactly the
    protocol, cap, seeds and loop of the learners: the ends of every expert-normalised score.

    Returns {"random": summary, "expert": summary or None}.
    """
    from ditto_jax.agents.acting import RandomAgent, ScriptedAgent  # jax, as above
    from ditto_jax.envs import atari
    from ditto_jax.envs.vector import make_vector_env
    game = atari.canonical_game(game)
    num_actions = len(atari.action_meanings(game))
    out = {}
    for name, agent, backend in (
            ("random", RandomAgent(num_actions, seed), "sync" if expert_spec else "native"),
            ("expert", ScriptedAgent(expert_spec, game, num_actions) if expert_spec else None,
             "sync")):
        if agent is None:
            out[name] = None
            continue
        returns, lengths, _ = run_episodes(
            lambda n, b=backend: make_vector_env(game, n, protocol, size=size, seed=seed,
                                                 backend=b),
            agent, episodes=episodes, num_envs=num_envs, seed=seed, max_steps=max_steps,
            progress=progress)
        out[name] = summarize(returns, lengths, game=game, protocol=protocol,
                              max_steps=max_steps)
    return out
