"""Single Atari environments (gymnasium + ale-py) under a named evaluation protocol.

Two protocols (SPEC section 6), each a frozen `Protocol`:

* ``ditto`` -- as the DITTO authors evaluated: no sticky actions, frame skip 4 with a
  max-pool over the last two frames, a random 1..30 no-op start, the episode ends at game
  over (not at a life loss), minimal action set.
* ``machado`` -- Machado et al. (2018), "Revisiting the ALE": sticky actions with
  probability 0.25, frame skip 4, game over ends the episode, a 108,000-frame cap
  (27,000 agent steps), no no-op starts.

Both cap an episode at 108,000 emulator frames. For ``machado`` that is the protocol; for
``ditto`` it is gymnasium's ALE v5 default, kept so that a stalled game (a Breakout ball
that is never launched) cannot run forever. It counts the no-op frames at the start.

`make_env` stacks ``gymnasium.make('ALE/<Game>-v5', frameskip=1, ...)`` and gymnasium's
`AtariPreprocessing` (frame skip, max-pool, no-ops, grayscale, ``cv2.INTER_AREA`` resize).
Observations are uint8 ``(H, W, 1)`` (``(H, W, 3)`` with ``grayscale=False``); rewards are
the raw game score changes (never clipped); actions index the game's minimal action set
unless ``full_action_space=True``.

Seeding: ``env.reset(seed=s)`` reseeds the emulator (sticky actions) and the no-op draw, so
the same seed and the same actions give the same episode. ``make_env(..., seed=s)`` applies
``s`` on the first ``reset()`` that is not given a seed of its own; later unseeded resets
continue that random stream, so a whole run is reproducible from ``s``.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import ale_py
import gymnasium
from gymnasium.wrappers import AtariPreprocessing, TimeLimit

from ditto_jax.errors import DittoError

gymnasium.register_envs(ale_py)


def quiet_ale():
    """Silences the emulator's start-up banner ("A.L.E: Arcade Learning Environment ...",
    "[Powered by Stella]") and its info lines; errors still print. The logger mode is
    process-wide in ale-py, so this runs on import and again at each env creation."""
    try:
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    except (AttributeError, TypeError):  # pragma: no cover - older ale-py
        pass


quiet_ale()

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "GAMES",
    "get_protocol",
    "canonical_game",
    "ale_id",
    "rom_id",
    "known_games",
    "make_env",
    "action_meanings",
    "num_actions",
]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How an Atari episode is run. Every reported number names one of these."""

    name: str
    repeat_action_probability: float  # sticky actions
    frame_skip: int  # emulator frames per agent step (max-pool of the last two)
    noop_max: int  # reset takes a uniform 1..noop_max no-op frames; 0 = none
    max_episode_frames: int | None  # emulator frames before truncation; None = no cap
    terminal_on_life_loss: bool = False
    full_action_space: bool = False
    description: str = ""

    @property
    def max_episode_steps(self) -> int | None:
        """The frame cap in agent steps (ignoring the no-op frames at reset)."""
        if self.max_episode_frames is None:
            return None
        return self.max_episode_frames // self.frame_skip


PROTOCOLS: dict[str, Protocol] = {
    "ditto": Protocol(
        name="ditto",
        repeat_action_probability=0.0,
        frame_skip=4,
        noop_max=30,
        max_episode_frames=108_000,
        description="DITTO paper: no sticky actions, frame skip 4 (max-pool), up to 30 "
        "no-op starts, game over ends the episode, minimal action set",
    ),
    "machado": Protocol(
        name="machado",
        repeat_action_probability=0.25,
        frame_skip=4,
        noop_max=0,
        max_episode_frames=108_000,
        description="Machado et al. 2018: sticky actions 0.25, frame skip 4, game over "
        "ends the episode, 108,000-frame cap, no no-op starts",
    ),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """Look a protocol up by name (a `Protocol` passes through)."""
    if isinstance(protocol, Protocol):
        return protocol
    key = str(protocol).strip().lower()
    if key not in PROTOCOLS:
        raise DittoError(
            f"Unknown evaluation protocol {protocol!r}",
            field="protocol",
            expected=" or ".join(repr(p) for p in PROTOCOLS),
            got=repr(protocol),
        )
    return PROTOCOLS[key]


# Canonical lowercase name -> ALE (PascalCase) name for the games this project reports.
GAMES: dict[str, str] = {
    "pong": "Pong",
    "breakout": "Breakout",
    "mspacman": "MsPacman",
    "beamrider": "BeamRider",
    "qbert": "Qbert",
    "spaceinvaders": "SpaceInvaders",
}

# ROMs that ship with ale-py but have no single-player v5 registration.
_NO_V5 = {"combat", "joust", "maze_craze", "warlords"}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@functools.lru_cache(maxsize=None)
def _all_roms() -> dict[str, str]:
    """Canonical name -> ROM id (snake_case) for every playable ROM ale-py ships."""
    return {
        _normalise(rom): rom
        for rom in ale_py.roms.get_all_rom_ids()
        if rom not in _NO_V5
    }


def known_games() -> list[str]:
    """Every canonical game name `make_env` accepts."""
    return sorted(set(GAMES) | set(_all_roms()))


def canonical_game(name: str) -> str:
    """'MsPacman', 'ms_pacman', 'ALE/MsPacman-v5' -> 'mspacman'; DittoError if unknown."""
    text = str(name).strip()
    match = re.fullmatch(r"(?:ALE/)?(.+?)(?:-v\d+)?", text)
    key = _normalise(match.group(1) if match else text)
    if key in GAMES or key in _all_roms():
        return key
    raise DittoError(
        f"Unknown Atari game {name!r}: no game of that name ships with ale-py. "
        f"The project's games are {', '.join(GAMES)}; any other ALE ROM name also works "
        f"(e.g. 'Seaquest')",
        field="game",
        got=repr(name),
    )


def rom_id(game: str) -> str:
    """The ale-py ROM id ('ms_pacman') used by `ale_py.roms` and the native vector env."""
    return _all_roms()[canonical_game(game)]


def ale_id(game: str) -> str:
    """The gymnasium id, e.g. 'ALE/MsPacman-v5'."""
    key = canonical_game(game)
    name = GAMES.get(key) or ale_py.registration.rom_id_to_name(_all_roms()[key])
    return f"ALE/{name}-v5"


@functools.lru_cache(maxsize=None)
def _action_set(game: str, full_action_space: bool) -> tuple[ale_py.Action, ...]:
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(rom_id(game)))
    actions = ale.getLegalActionSet() if full_action_space else ale.getMinimalActionSet()
    return tuple(actions)


def action_meanings(game: str, full_action_space: bool = False) -> list[str]:
    """Names of the actions, in index order ('NOOP', 'FIRE', 'RIGHT', ...)."""
    return [a.name for a in _action_set(canonical_game(game), bool(full_action_space))]


def num_actions(game: str, full_action_space: bool = False) -> int:
    """Size of the (minimal, by default) action set."""
    return len(_action_set(canonical_game(game), bool(full_action_space)))


class _SeedFirstReset(gymnasium.Wrapper):
    """Use `seed` for the first reset() that is not given one (make_env(seed=...))."""

    def __init__(self, env, seed):
        super().__init__(env)
        self._pending_seed = seed
        env.action_space.seed(seed)

    def reset(self, *, seed=None, options=None):
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def make_env(
    game: str,
    protocol: str | Protocol = "ditto",
    *,
    size: tuple[int, int] | int = (64, 64),
    grayscale: bool = True,
    full_action_space: bool = False,
    seed: int | None = None,
    max_episode_steps: int | None = None,
    noop_max: int | None = None,
    render_mode: str | None = None,
) -> gymnasium.Env:
    """A preprocessed Atari env under `protocol`.

    size: (height, width) of the observation, or one int for a square.
    max_episode_steps: an extra agent-step cap (TimeLimit) on top of the protocol's.
    noop_max: overrides the protocol's no-op maximum (0 turns no-op starts off).
    `env.unwrapped.ale` is the raw emulator (RAM, cloneState/restoreState).
    """
    proto = get_protocol(protocol)
    height, width = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if height <= 0 or width <= 0:
        raise DittoError("Observation size must be positive", field="size", got=size)
    noops = proto.noop_max if noop_max is None else int(noop_max)
    quiet_ale()
    env = gymnasium.make(
        ale_id(game),
        frameskip=1,  # AtariPreprocessing does the skipping and the max-pool
        repeat_action_probability=proto.repeat_action_probability,
        full_action_space=bool(full_action_space or proto.full_action_space),
        max_num_frames_per_episode=proto.max_episode_frames or 0,  # 0: no cap
        # The preprocessor reads the screen itself; grayscale is the cheaper base obs.
        obs_type="grayscale" if grayscale else "rgb",
        render_mode=render_mode,
    )
    env = AtariPreprocessing(
        env,
        noop_max=noops,
        frame_skip=proto.frame_skip,
        screen_size=(width, height),  # cv2 order
        terminal_on_life_loss=proto.terminal_on_life_loss,
        grayscale_obs=grayscale,
        grayscale_newaxis=True,
        scale_obs=False,
    )
    if max_episode_steps is not None:
        env = TimeLimit(env, max_episode_steps=int(max_episode_steps))
    env = _SeedFirstReset(env, seed)
    return env
