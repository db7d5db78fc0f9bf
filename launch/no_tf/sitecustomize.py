"""Put on PYTHONPATH to make `import tensorflow` / `import tensorflow_datasets` fail, as on
the GPU host, which has neither (launch/device_study.sh --tiny, tests)."""
import sys

for _name in ("tensorflow", "tensorflow_datasets"):
    sys.modules[_name] = None  # `import _name` raises ImportError
