"""A Ray worker takes the same claim on its phone as every Android environment: a phone that a local run is
driving is never handed to a worker, and two workers of one process never share a phone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from screenpilot.envs.android.claim import DeviceBusyError
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone
from screenpilot.errors import SetupError
from screenpilot.tasks import ray_worker

HOLD = """
import sys, time
from screenpilot.envs.android.claim import DeviceClaim
claim = DeviceClaim(sys.argv[1], int(sys.argv[2]), sys.argv[3])
print("held", flush=True)
time.sleep(60)
"""


def test_workers_skip_phones_in_use_and_never_share_one(monkeypatch: pytest.MonkeyPatch) -> None:
    phones = [FakePhone(serial=s) for s in ("P1", "P2", "P3")]
    with FakeAdbServer(phones) as fake:
        for name, value in fake.environ.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(ray_worker, "_claims", {})
        other_run = subprocess.Popen(
            [sys.executable, "-c", HOLD, fake.host, str(fake.port), "P1"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert other_run.stdout is not None and other_run.stdout.readline().strip() == "held"
            assert ray_worker.claim_serial([]) == "P2"  # P1 is driven by another run
            assert ray_worker.claim_serial([]) == "P3"  # P2 is this process's first worker's
            with pytest.raises(SetupError, match="no free Android device on node"):
                ray_worker.claim_serial([])
        finally:
            other_run.kill()
            other_run.wait()
        local_run = subprocess.run(
            [sys.executable, "-c", HOLD.replace("time.sleep(60)", ""), fake.host, str(fake.port), "P2"],
            capture_output=True,
            text=True,
        )
        for claim in ray_worker._claims.values():
            claim.release()
    assert local_run.returncode != 0  # the worker's claim keeps a local run off its phone
    assert (
        f"{DeviceBusyError.__name__}: Android device 'P2' is in use by another screenpilot run"
        in local_run.stderr
    )
