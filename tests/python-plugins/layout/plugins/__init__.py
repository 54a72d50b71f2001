"""Slack Machine's documented plugin layout: a `plugins` package."""
