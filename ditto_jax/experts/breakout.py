"""Scripted Breakout expert: RAM reading plus emulator look-ahead (a data generator).

Algorithm (docs/experts.md):

1. Read the RAM: the paddle's x (byte 72), the ball's x and y (99, 101; y grows
   downward, 0 when no ball is in play).
2. No ball in play (the start, or after a lost life): press FIRE to launch it,
   alternating with NOOP so that a held button cannot stall the launch.
3. Once per descent of the ball, plan on a shadow emulator
   (`ditto_jax.experts.base.Emulator`; the real one is never touched):
   a. play NOOPs until the ball reaches the paddle's height: that is where it will cross
      (`intercept`);
   b. for each candidate aim ``offset`` (where on the paddle to meet the ball, which sets
      the bounce angle), play the paddle controller "move to intercept + offset" until
      the ball leaves the paddle (or a life is lost). The rest of the volley -- bricks
      broken, and where and when the ball next comes down -- cannot depend on the
      paddle, so it is simulated once per distinct bounce and cached;
   c. keep the candidate that loses no life, leaves the next landing spot within the
      paddle's reach, and breaks the most bricks; ties go to the aim nearest the
      intercept.
4. Every step, move the paddle toward the planned x. Without sticky actions the real
   volley replays the simulated one exactly; the shadow starts from the real state with
   its RNG, so with sticky actions it usually does too. Whenever the real game leaves
   the simulated path before the bounce, plan again.

The game has two walls (864 points). Once both are cleared no bricks remain and the game
would go on until the 108,000-frame cap (27,000 steps, most of them an empty screen), so
the expert then keeps the paddle away from the ball (it still launches each ball): the
remaining lives are lost within a few hundred steps and the episode ends at game over.

When a volley can break no brick (the end of a wall, with a few bricks left), a finer
family of aims is searched as well, and the bounce taken least often so far is chosen,
so the ball explores new paths instead of repeating a loop that never reaches them.
"""

from __future__ import annotations

import numpy as np

from ditto_jax.experts.base import Emulator

# RAM addresses.
PADDLE_X, BALL_X, BALL_Y = 72, 99, 101
# Ball y at the paddle's height (the ball turns back at 170-176).
PADDLE_Y = 168
# Score (BCD) and the most a game can score: two walls of 432.
SCORE_HI, SCORE_LO, MAX_SCORE = 76, 77, 864
# The paddle's x range, and how far it moves per agent step at full speed.
PX_MIN, PX_MAX, PADDLE_SPEED = 55, 191, 20
# A ball "descending toward the paddle" once it is below the bricks (y grows downward).
LOW_Y = 120


class BreakoutExpert:
    """RAM + look-ahead Breakout player; acts in the env's (minimal by default) action set."""

    def __init__(
        self,
        num_actions: int | None = None,
        seed: int | None = 0,
        reach: int = 30,
        gains=((3, 0.0, 4),),
        fine_gains=((0, 0.0, 2), (0, 1.0, 4), (8, 0.0, 4)),
        horizon: int = 300,
    ):
        self.reach = int(reach)
        # (dead band, damping, offset step) of the paddle controllers tried: `gains`
        # every plan, `fine_gains` too when those find no brick to break.
        self.gains = tuple((int(d), float(k), int(s)) for d, k, s in gains)
        self.fine_gains = tuple((int(d), float(k), int(s)) for d, k, s in fine_gains)
        self.horizon = int(horizon)
        self._emu = None
        self._rng = np.random.default_rng(seed)
        self._reset_state()

    def _reset_state(self):
        self._prev_by = 0
        self._prev_px = 0
        self._plan_now = None  # (target x, dead band, damping)
        self._planned = False  # planned during the current descent of the ball
        self._forecast = []  # simulated (paddle x, ball x, ball y) up to the bounce
        self._forecast_t = 0
        self._t = 0
        self._idle = 0  # consecutive steps without a ball in play
        self._visits = {}  # bounce outcome -> times chosen without a brick to gain

    # -- the policy protocol --------------------------------------------------------
    def reset(self, env, seed):
        self._bind(env).note_action(self._noop)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_state()

    def act(self, obs, env) -> int:
        emu = self._bind(env)
        ram = emu.ram()
        px, bx, by = int(ram[PADDLE_X]), int(ram[BALL_X]), int(ram[BALL_Y])
        dy = by - self._prev_by
        self._prev_by = by
        self._t += 1

        if by == 0:  # no ball: launch it (FIRE, NOOP, FIRE, ... so it cannot stall)
            self._idle += 1
            self._plan_now = None
            self._planned = False
            action = self._fire if self._idle % 2 == 1 else self._noop
        elif self._score(ram) >= MAX_SCORE:
            # Both walls cleared: nothing is left to score and the game would go on to
            # the frame cap. Keep the paddle away from the ball, so the last lives are
            # lost and the game ends.
            self._idle = 0
            action = self._right if px + 8 > bx else self._left  # away from it
        else:
            self._idle = 0
            descending = 0 < dy < 40 and by < PADDLE_Y
            if descending:
                # Plan once per descent, and again whenever the game leaves the
                # simulated path (a sticky-action corner case, or an epsilon action).
                k = self._t - self._forecast_t - 1
                off_path = 0 <= k < len(self._forecast) and self._forecast[k] != (px, bx, by)
                if not self._planned or off_path:
                    plan, self._forecast = self._plan(emu)
                    self._plan_now = plan or self._plan_now
                    self._forecast_t = self._t
                    self._planned = True
            else:
                self._planned = False
            plan = self._plan_now or (bx, *self.gains[0][:2])
            action = self._control(px, self._prev_px, *plan)
        self._prev_px = px
        emu.note_action(action)
        return action

    @staticmethod
    def _score(ram) -> int:
        """The game's score display (BCD in two RAM bytes)."""
        def bcd(v):
            return (v >> 4) * 10 + (v & 15)
        return 100 * bcd(int(ram[SCORE_HI])) + bcd(int(ram[SCORE_LO]))

    def note_action(self, action: int) -> None:
        """The env will take `action` instead (e.g. an epsilon override)."""
        if self._emu is not None:
            self._emu.note_action(action)

    # -- internals ------------------------------------------------------------------
    def _bind(self, env) -> Emulator:
        if self._emu is None or self._emu.env_ale is not env.unwrapped.ale:
            self._emu = Emulator(env)
            self._right = self._emu.index("RIGHT")
            self._left = self._emu.index("LEFT")
            self._noop = self._emu.index("NOOP")
            self._fire = self._emu.index("FIRE")
        return self._emu

    def _control(self, px, prev_px, target, deadband, damping) -> int:
        ahead = px + damping * (px - prev_px)
        if ahead < target - deadband:
            return self._right
        if ahead > target + deadband:
            return self._left
        return self._noop

    def _intercept(self, emu: Emulator) -> int | None:
        """Ball x when it comes down to the paddle's height (NOOPs on the shadow)."""
        lives = emu.sim.lives()
        for _ in range(120):
            ram = emu.sim_ram()
            if int(ram[BALL_Y]) >= PADDLE_Y:
                return int(ram[BALL_X])
            emu.step(self._noop)
            if emu.sim.lives() < lives or int(emu.sim_ram()[BALL_Y]) == 0:
                return int(ram[BALL_X])  # it got past between two steps
        return None

    def _rollout(self, emu: Emulator, plan, cache: dict, path: list):
        """Score of one volley under `plan`: bricks broken, -1000 for a lost life, -500
        if the ball's next landing spot is then out of the paddle's reach.

        Until the ball meets the paddle, the paddle follows `plan`. From then on the
        paddle cannot change the ball's flight, so the rest -- the reward up to the
        ball's next arrival at the paddle's height, where it arrives and when -- is
        looked up in `cache` by the ball's position and velocity off the paddle.
        Returns (score, outcome key); appends (paddle x, ball x, ball y) after each step
        up to the bounce to `path`.
        """
        lives = emu.sim.lives()
        prev_by = int(emu.sim_ram()[BALL_Y])
        prev_px = self._prev_px
        total = 0.0
        for t in range(self.horizon):
            px = int(emu.sim_ram()[PADDLE_X])
            total += emu.step(self._control(px, prev_px, *plan))
            prev_px = px
            if emu.sim.lives() < lives or emu.sim.game_over():
                return -1000.0 + total, None
            ram = emu.sim_ram()
            by = int(ram[BALL_Y])
            path.append((int(ram[PADDLE_X]), int(ram[BALL_X]), by))
            if by < prev_by:
                break  # off the paddle
            prev_by = by
        else:
            return total, None
        contact_px = int(emu.sim_ram()[PADDLE_X])
        first = emu.sim_ram()
        total += emu.step(self._noop)  # one more step gives the ball's velocity
        ram = emu.sim_ram()
        key = (int(first[BALL_X]), int(first[BALL_Y]), int(ram[BALL_X]), int(ram[BALL_Y]),
               total)
        if key not in cache:
            cache[key] = self._flight(emu, lives, total)
        reward, land_x, steps = cache[key]
        if land_x is not None and abs(land_x - contact_px) > PADDLE_SPEED * max(steps - 2, 0):
            reward -= 500.0  # the next ball would land out of reach
        return reward, key

    def _flight(self, emu: Emulator, lives: int, total: float):
        """After the bounce: (reward, x and steps at the next arrival at paddle height)."""
        prev_by, down = int(emu.sim_ram()[BALL_Y]), False
        for steps in range(1, self.horizon):
            total += emu.step(self._noop)
            ram = emu.sim_ram()
            by = int(ram[BALL_Y])
            if emu.sim.lives() < lives or emu.sim.game_over() or by == 0:
                return total, None, steps
            down = down or (by > prev_by and by >= LOW_Y)
            if down and by >= PADDLE_Y:
                return total, int(ram[BALL_X]), steps
            prev_by = by
        return total, None, self.horizon

    def _plan(self, emu: Emulator):
        """The (target, dead band, damping) whose simulated volley scores best."""
        state = emu.begin()
        ix = self._intercept(emu)
        if ix is None:
            return None, []
        cache: dict = {}
        scored: list = []  # (score, |offset|, plan, outcome key, simulated path)
        for family in (self.gains, self.fine_gains):
            for deadband, damping, step in family:
                seen = set()
                for offset in range(-self.reach, self.reach + 1, step):
                    # Targets past a wall all play the same: simulate one of them.
                    target = min(max(ix + offset, PX_MIN - deadband), PX_MAX + deadband)
                    if target in seen:
                        continue
                    seen.add(target)
                    emu.restore(state)
                    plan, path = (target, deadband, damping), []
                    score, key = self._rollout(emu, plan, cache, path)
                    scored.append((score, abs(offset), plan, key, path))
            if max(s[0] for s in scored) > 0:
                break  # bricks to break: the coarse family is enough
            # Nothing to gain (or the ball is lost): search finer aims, which reach
            # bounce angles the coarse family cannot.
        best = max(s[0] for s in scored)
        ties = [s for s in scored if s[0] == best]
        if best > 0:
            choice = min(ties, key=lambda s: s[1])  # then the aim nearest the intercept
            return choice[2], choice[4]
        # Nothing to gain this volley: pick the *bounce* (not the candidate: most share
        # one) taken least often so far, ties at random, so that the ball explores new
        # paths and a lone remaining brick is eventually reached instead of looping.
        by_key: dict = {}
        for s in ties:
            by_key.setdefault(s[3], s)
        fewest = min(self._visits.get(k, 0) for k in by_key)
        options = sorted((s for k, s in by_key.items() if self._visits.get(k, 0) == fewest),
                         key=lambda s: (s[1], s[2]))
        choice = options[int(self._rng.integers(len(options)))]
        self._visits[choice[3]] = self._visits.get(choice[3], 0) + 1
        return choice[2], choice[4]
