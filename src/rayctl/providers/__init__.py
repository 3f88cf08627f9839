"""Where Ray clusters come from.

- `local`: a Ray head that rayctl starts and owns on this machine (the default target).
- `skypilot` (cloud target, optional): a Ray cluster on the cheapest offer through SkyPilot.

An existing cluster (`target: http://head:8265`) needs no provider: rayctl only submits
jobs to it and never starts or stops anything there.
"""
