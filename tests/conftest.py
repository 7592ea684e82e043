import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# every `asd` command writes a tracking record (asd.tracking): keep the test runs' records out of the checkout
os.environ.setdefault("ASD_LOG_DIR", tempfile.mkdtemp(prefix="asd-test-logs-"))
