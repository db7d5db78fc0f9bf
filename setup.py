"""ditto_jax: DITTO (offline imitation learning with world models) in JAX/Flax."""
import glob  # data_files

from setuptools import find_packages, setup

setup(
    name="ditto_jax",
    version="0.1.0",
    description="DITTO: offline imitation learning with world models, in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ditto_jax", "ditto_jax.*"]),
    # Experiment configs and grids, found after a non-editable install by
    # ditto_jax.resources under <prefix>/share/ditto_jax/experiments/.
    data_files=[(f"share/ditto_jax/experiments/{d}", sorted(glob.glob(f"experiments/{d}/*.py")))
                for d in ("configs", "grids")],
    install_requires=[
        # compute
        "jax>=0.4.35",
        "flax>=0.10",
        "optax",
        "chex",
        "orbax-checkpoint",
        # data (RLDS through TFDS; the `rlds` package needs dm-reverb, which does
        # not install next to current TensorFlow)
        "tensorflow-cpu>=2.16",
        "tensorflow-datasets>=4.9",
        # environments
        "gymnasium>=1.0",
        "ale-py>=0.10",
        "opencv-python-headless",
        # configs, progress, plots, video
        "ml_collections",
        "tqdm",
        "matplotlib",
        "mediapy",
        "imageio",
        "pillow",
        "tensorboardX",
        "rliable",
        "submitit",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "nbmake"],
    },
    entry_points={"console_scripts": ["ditto=ditto_jax.cli:main"]},
)
