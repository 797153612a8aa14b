"""The client side of the workflows: start, steer and query them from outside (the CLI, schedules, tests).

Code here talks to Temporal through its client and knows the workflows only by their contracts in
``orchestrator.api`` (names, ids, inputs, statuses), so nothing below the workflows imports them and
no import cycle runs through the workflow package. One place per capability:

    temporal         connect (TLS, API key), send a control, list runs
    pollers          is a worker polling? controls that never hang
    canary, flags    start a rollout / a ramp (one per target, refused while one runs)
    chaos            start, abort (one or all) and read experiments
    chaos_schedules  experiments' Temporal Schedules;  janitor: the janitor's
"""
