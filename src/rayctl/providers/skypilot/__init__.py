"""The cloud target through SkyPilot."""
