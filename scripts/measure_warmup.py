"""First-request latency of the bundled CNN with and without warmup: `python scripts/measure_warmup.py`.

Each trial starts a fresh server; the channel is connected (ServerLive) before the timed request.
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server_process import running_server

for warm in (False, True):
    firsts, seconds = [], []
    for _trial in range(7):
        d = Path(tempfile.mkdtemp())
        shutil.copytree("models/cnn", d / "cnn")
        cfg = json.loads((d / "cnn/config.json").read_text())
        if warm:
            cfg["warmup"] = {"batch_sizes": [1, 8], "data": "random"}
        (d / "cnn/config.json").write_text(json.dumps(cfg))
        with running_server(d, d / "log") as s:
            c = triton.InferenceServerClient(s.address)
            c.is_server_live()
            x = np.random.rand(1, 3, 32, 32).astype(np.float32)
            t = triton.InferInput("pixels", [1, 3, 32, 32], "FP32")
            t.set_data_from_numpy(x)
            t0 = time.perf_counter()
            c.infer("cnn", [t])
            firsts.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            c.infer("cnn", [t])
            seconds.append((time.perf_counter() - t0) * 1e3)
    runs = [round(f, 2) for f in firsts]
    print(f"warmup={warm}: first request {np.median(firsts):.2f} ms {runs}, second {np.median(seconds):.2f} ms")
