"""The work the service runs, each a plain function with one shared lifecycle: a job (submission,
admission, runner, training, checkpoints), evaluations, replay-set builds and sweeps."""
