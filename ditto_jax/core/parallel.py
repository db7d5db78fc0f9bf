"""Device plumbing: multi-host start-up, the data-parallel mesh and shardings.

One code path for 1..N devices on 1..M hosts: params are replicated, the batch
is sharded along the `data` axis. Each host samples its own slice of the global
batch from its own shard of episodes.
"""
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ditto_jax.errors import DittoError

DATA_AXIS = "data"


def initialize_distributed(coordinator=None, num_processes=None, process_id=None):
    """Calls `jax.distributed.initialize` when a multi-process run is requested.

    Arguments fall back to DITTO_COORDINATOR / DITTO_NUM_PROCESSES /
    DITTO_PROCESS_ID; on managed clusters (SLURM, TPU pods) jax detects them
    itself when DITTO_DISTRIBUTED=auto.
    """
    coordinator = coordinator or os.environ.get("DITTO_COORDINATOR")
    num_processes = num_processes or os.environ.get("DITTO_NUM_PROCESSES")
    process_id = process_id if process_id is not None else os.environ.get("DITTO_PROCESS_ID")
    if os.environ.get("DITTO_DISTRIBUTED") == "auto":
        jax.distributed.initialize()
    elif coordinator:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=int(num_processes),
                                   process_id=int(process_id))
    return jax.process_index(), jax.process_count()


def make_mesh(devices=None):
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def batch_sharding(mesh):
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh):
    return NamedSharding(mesh, P())


def local_batch_size(global_batch, mesh):
    """The slice of the global batch this host samples."""
    num_devices = mesh.devices.size
    if global_batch % num_devices:
        raise DittoError("The batch must divide evenly over the devices", field="batch_size",
                         expected=f"a multiple of {num_devices} devices", got=global_batch)
    return global_batch // jax.process_count()


def shard_batch(batch, mesh):
    """Host-local numpy batch -> global jax arrays sharded on the data axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh):
    """Places a host-local pytree (identical on every host) replicated on the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def to_global(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(to_global(jax.random.key_data(x)),
                                            impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(to_global, tree)


def enable_compilation_cache(path=None):
    """Persists compiled XLA programs across runs (resumes and sweeps skip recompiling).

    DITTO_XLA_CACHE=off disables it; otherwise it defaults to ~/.cache/ditto_jax/xla.
    """
    path = path or os.environ.get("DITTO_XLA_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "ditto_jax", "xla")
    if path == "off":
        return None
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
