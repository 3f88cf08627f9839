"""Schedules: cron expressions, crontab lines, the registry and `schedule run`."""
