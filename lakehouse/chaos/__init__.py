"""`make chaos`: faults against the running stack at load (kill -9 of every
program, PostgreSQL and the broker stopped, the lake's disk full, a DAG run
in between), then proof that nothing was lost, doubled or left down.
schedule.py draws the faults from a seed, checks.py recomputes what the
stack must hold, runner.py wires them to a real stack, cli.py is the command."""
