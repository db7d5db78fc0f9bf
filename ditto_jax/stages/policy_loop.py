"""The policy stage's device loop: K updates per host call with on-device sampling, seeds
vmapped (where it pays), and the per-seed data stacking behind it."""
import jax
import jax.numpy as jnp
import numpy as np

from ditto_jax.core import parallel


def make_advance(method, config, ctx, data_axes, mesh):
    """The jitted chunk: K (traced) updates of every seed from absolute update `start`, each
    sampling its batch on device; returns the states and the last update's metrics.
    Methods with `device_loop = False` get the same updates one host call each."""
    step_fn = method.train_step(config, ctx)
    batch_spec = parallel.batch_sharding(mesh)

    def update(state, key, data, wm_params, s):
        """Update `s` of one seed: its batch and step keys are fold_in(key, s)."""
        k_batch, k_step = jax.random.split(jax.random.fold_in(key, s))
        batch = method.sample(config, data, k_batch)
        if mesh.devices.size > 1:
            batch = jax.lax.with_sharding_constraint(batch, batch_spec)
        return step_fn(state, batch, k_step, wm_params)

    def one_seed(state, key, data, wm_params, start, n):
        template = jax.eval_shape(update, state, key, data, wm_params, start)[1]
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), template)
        return jax.lax.fori_loop(
            0, n, lambda i, c: update(c[0], key, data, wm_params, start + i), (state, zeros))

    if method.device_loop:
        return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, data_axes, None, None, None)),
                       donate_argnums=0)
    # No while loop at all here: a traced trip count (even 1) makes XLA's CPU backend run
    # the convolutions inside a while loop, ~7x slower for pixel BC (3.44 s against 0.50 s
    # per update at the small preset).
    single = jax.jit(jax.vmap(update, in_axes=(0, 0, data_axes, None, None)),
                     donate_argnums=0)

    def host_loop(state, keys, data, wm_params, start, n):
        """One jitted update (sampling included) per host call: same keys, same result."""
        for s in range(int(start), int(start) + int(n)):
            state, metrics = single(state, keys, data, wm_params, s)
        return state, metrics
    return host_loop


def vmap_pays():
    """Whether vmapping seeds beats training them one after another on this backend.

    Measured (benchmarks/policy.py, small preset, 2-core CPU): 3 vmapped seeds cost 4.5x
    one seed per update, sequential 3x; on a 2-core CPU there is no idle parallelism
    for the extra seeds to use. Accelerators are built for the wider batch."""
    return jax.default_backend() != "cpu"


def _with_seed(config, seed):
    import ml_collections
    c = config.as_configdict()
    c.seed = int(seed)
    return ml_collections.FrozenConfigDict(c)


def _stack_data(per_seed):
    """Leaves equal for every seed are shared (vmap axis None); the rest get a seed axis."""
    first = per_seed[0]
    data, axes = {}, {}
    for k in first:
        same = all(d[k] is first[k] or np.array_equal(np.asarray(d[k]), np.asarray(first[k]))
                   for d in per_seed[1:])
        data[k] = first[k] if same else np.stack([np.asarray(d[k]) for d in per_seed])
        axes[k] = None if same else 0
    return data, axes
