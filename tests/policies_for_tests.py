"""Policy factories used by tests through `--policy tests.policies_for_tests:NAME`."""


class _Interrupting:
    """Acts randomly, then raises KeyboardInterrupt at a given global step (a Ctrl-C)."""

    def __init__(self, num_actions, interrupt_at):
        self.num_actions, self.interrupt_at, self.t = num_actions, interrupt_at, 0

    def reset(self, env, seed):
        pass

    def act(self, obs, env):
        self.t += 1
        if self.t == self.interrupt_at:
            raise KeyboardInterrupt
        return self.t % self.num_actions


def interrupt_in_third_episode(*, num_actions, **unused):
    # Episodes are capped at 30 steps in the test, so step 70 is in episode 3.
    return _Interrupting(num_actions, interrupt_at=70)
