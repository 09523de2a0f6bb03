"""Run inside the model sandbox by the tests: what the sandbox lets a process see and do."""

import json
import os
import resource
import socket

if __name__ == "__main__":
    probe = socket.socket()
    probe.settimeout(2)
    try:
        probe.connect(("127.0.0.1", 5432))
        reached = True
    except OSError:
        reached = False
    print(
        json.dumps(
            {
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "reached": reached,
                "as": resource.getrlimit(resource.RLIMIT_AS)[0],
                "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
            }
        )
    )
