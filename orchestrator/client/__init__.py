"""The client side of the workflows: start, steer and query them from outside (the CLI, schedules, tests).

Code here talks to Temporal through its client and knows the workflows only by their contracts in
``orchestrator.api`` (names, ids, inputs, statuses), so nothing below the workflows imports them and
no import cycle runs through the workflow package. ``chaos`` starts, aborts (one or all) and reads
experiments; ``chaos_schedules`` keeps their Temporal Schedules; ``janitor`` keeps the janitor's.
"""
