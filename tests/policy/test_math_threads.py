"""The prediction workers run the math libraries on one thread: a thread team only adds contention there."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
from concurrent.futures import ThreadPoolExecutor
from threadpoolctl import threadpool_info
from router.artifacts import single_threaded_math
import numpy
before = {i["user_api"]: i["num_threads"] for i in threadpool_info()}
ThreadPoolExecutor(1, initializer=single_threaded_math).submit(lambda: None).result()
after = {i["user_api"]: i["num_threads"] for i in threadpool_info()}
print(before.get("blas"), after.get("blas"))
"""


def test_the_workers_initializer_limits_blas_to_one_thread() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          env={"OPENBLAS_NUM_THREADS": "2", "PATH": ""}, check=True)
    before, after = done.stdout.split()
    assert before == "2", "the probe starts with a thread team"
    assert after == "1"
