"""ditto_jax: DITTO (offline imitation learning with world models) in JAX/Flax.

  pip install -e .                 CPU (or a machine whose jax already has its GPU/TPU plugin)
  pip install -e '.[cuda12]'       NVIDIA GPU: jax with its CUDA 12 plugin
  pip install -e '.[tpu]'          Cloud TPU: jax with libtpu
  pip install -e '.[test]'         + pytest (and wandb, for its offline test)
  pip install -e '.[wandb]'        + Weights & Biases (optional experiment tracking)
  pip install -e '.[tensorboard]'  + the TensorBoard viewer, and moviepy, which TensorBoard
                                     videos (tensorboardX's add_video) need

Two requirements depend on what the target environment already has (looked up in the
Python that pip installs into, also from inside pip's isolated build environment; a wheel
built here and installed elsewhere keeps this machine's answer):

* TensorFlow (only the host-side RLDS/TFDS reader uses it; it never touches the GPU). If
  any TensorFlow is importable (Colab's preinstalled GPU `tensorflow`, `tensorflow-cpu`,
  `tensorflow-macos`, ...) it is used as it is and no TensorFlow requirement is added:
  requiring `tensorflow-cpu` there would install a second distribution into the same
  `tensorflow/` package directory and break both. Otherwise `tensorflow-cpu>=2.16` (Linux
  x86_64 and Windows: half the download of `tensorflow`, and no second CUDA runtime next
  to jax's) or `tensorflow>=2.16` (other platforms, where no -cpu wheel exists).
  DITTO_TF_REQUIREMENT="..." forces a requirement ("none": no TensorFlow requirement).
* jax. If a jax accelerator plugin is installed (jax-cuda12/13-plugin, libtpu, jax-rocm),
  jax and jaxlib are pinned to the installed versions, so resolving flax, optax, chex or
  orbax can never upgrade jax past its plugin (the resolver picks versions that work with
  the installed jax instead). DITTO_PIN_JAX=0 turns this off.
"""
import glob  # data_files
import json
import os
import subprocess
import sys

from setuptools import find_packages, setup

_PROBE = r"""
import importlib.metadata as md, importlib.util as u, json
names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in md.distributions()}
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
print(json.dumps({
    "tensorflow": u.find_spec("tensorflow") is not None,
    "jax": version("jax"), "jaxlib": version("jaxlib"),
    "plugins": sorted(n for n in names if n.startswith(("jax-cuda", "jax-rocm", "libtpu"))),
}))
"""


def _probe_environment():
    """What the target Python has installed (see the module docstring); {} if unknown.

    pip's isolated build sets PYTHONPATH / PYTHONNOUSERSITE to hide the target's packages;
    a child interpreter without them sees the environment being installed into.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - unknown: fall back to the plain requirements
        return {}


def _environment_requirements():
    found = _probe_environment()
    reqs = []
    forced = os.environ.get("DITTO_TF_REQUIREMENT")
    if forced is not None:
        reqs += [] if forced.strip().lower() in ("", "none") else [forced.strip()]
    elif not found.get("tensorflow"):
        cpu_wheel = ("(sys_platform == 'linux' and platform_machine == 'x86_64') or "
                     "(sys_platform == 'win32' and platform_machine == 'AMD64')")
        no_cpu_wheel = ("(sys_platform != 'linux' or platform_machine != 'x86_64') and "
                        "(sys_platform != 'win32' or platform_machine != 'AMD64')")
        reqs += [f"tensorflow-cpu>=2.16; {cpu_wheel}", f"tensorflow>=2.16; {no_cpu_wheel}"]
    if found.get("plugins") and found.get("jax") and os.environ.get("DITTO_PIN_JAX") != "0":
        reqs.append(f"jax=={found['jax']}")
        if found.get("jaxlib"):
            reqs.append(f"jaxlib=={found['jaxlib']}")
    return reqs

setup(
    name="ditto_jax",
    version="0.1.0",
    description="DITTO: offline imitation learning with world models, in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ditto_jax", "ditto_jax.*"]),
    # Experiment configs and grids, found after a non-editable install by
    # ditto_jax.core.resources under <prefix>/share/ditto_jax/experiments/.
    data_files=[(f"share/ditto_jax/experiments/{d}", sorted(glob.glob(f"experiments/{d}/*.py")))
                for d in ("configs", "grids")],
    install_requires=[
        # compute
        "jax>=0.4.35",
        # Tested with flax 0.12; each flax release requires the jax of its day (0.12.8:
        # jax>=0.10), so an open-ended flax could drag jax forward. The upper bound plus
        # the jax pin above (when a plugin is installed) keep jax where it is.
        "flax>=0.10,<0.13",
        "optax",
        "chex",
        "orbax-checkpoint",
        # data (RLDS through TFDS; the `rlds` package needs dm-reverb, which does
        # not install next to current TensorFlow). TensorFlow itself: see the module
        # docstring (_environment_requirements).
        "tensorflow-datasets>=4.9",
        # environments
        "gymnasium>=1.0",
        "ale-py>=0.10",
        "opencv-python-headless",
        # configs, progress, plots, video
        "ml_collections",
        "tqdm",
        "matplotlib",
        "mediapy",   # episode videos (ditto_jax/core/viz.py); Pillow writes the GIF fallback
        "pillow",
        "tensorboardX",
        "rliable",
        "submitit",
    ] + _environment_requirements(),
    extras_require={
        # wandb (optional experiment tracking, `config.tracking.wandb_project`) is in the
        # test extra too: its test logs to a real offline run. Measured here: `pip install
        # wandb` (0.31, a 20 MB wheel) took 9 s into the test venv and 22 s into an empty
        # venv with --no-cache-dir (34 packages in all).
        "test": ["pytest", "pytest-timeout", "nbmake", "wandb"],
        "wandb": ["wandb"],
        # jax[cuda12] pulls the CUDA 12 plugin and NVIDIA's pip CUDA libraries, matched to
        # the jax version; jax[tpu] pulls libtpu.
        "cuda12": ["jax[cuda12]"],
        # Viewing the logs (`tensorboard --logdir WORKDIR/tensorboard`) and their episode
        # videos: without moviepy an episode goes to TensorBoard as a frame grid instead.
        "tensorboard": ["tensorboard", "moviepy"],
        "tpu": ["jax[tpu]"],
    },
    entry_points={"console_scripts": ["ditto=ditto_jax.cli:main"]},
)
