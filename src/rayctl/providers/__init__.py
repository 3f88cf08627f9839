"""Where rayctl runs workloads: the local Ray cluster and the cloud (SkyPilot)."""
