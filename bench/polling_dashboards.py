"""Locust users for bench/status_polling.py: lab dashboards, each polling one job's status every
2 s over its own keep-alive connection (run by that benchmark as `locust -f <this file>`).

Read from the environment: MLFT_BENCH_JOB_IDS (a file of job ids, one a line), MLFT_BENCH_TOKEN
(a project token; empty: no Authorization header, the embedded default) and
MLFT_BENCH_PERIOD_S (seconds between one dashboard's polls).
"""

import os
import random
from pathlib import Path

from locust import constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser

JOB_IDS = Path(os.environ["MLFT_BENCH_JOB_IDS"]).read_text().split()
TOKEN = os.environ.get("MLFT_BENCH_TOKEN", "")
PERIOD_S = float(os.environ.get("MLFT_BENCH_PERIOD_S", "2"))


class Dashboard(FastHttpUser):
    # A poll starts every PERIOD_S whatever the last one took (a slow answer does not slow the
    # offered load down, as it would with a fixed wait after each answer): an open loop of
    # users / PERIOD_S requests per second while answers take less than PERIOD_S.
    wait_time = constant_pacing(PERIOD_S)
    # Connection errors are counted as failures, never retried behind the benchmark's back.
    max_retries = 0

    def on_start(self) -> None:
        self.job_id = random.choice(JOB_IDS)
        self.headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}

    @task
    def poll_status(self) -> None:
        self.client.get(f"/jobs/{self.job_id}", headers=self.headers, name="GET /jobs/{id}")
