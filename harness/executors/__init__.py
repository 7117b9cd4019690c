"""Executors run a plan's steps: `local` in this process, `ray` on a Ray cluster.

One contract (`run(runner, plan) -> Iterator[StepResult]`): results come back as plain data in
completion order, and the driver alone stores them. A step whose needs failed is never run; the
executor hands back its cells as failed with the need's error.
"""
