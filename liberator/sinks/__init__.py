"""Sink connectors shipped with liberator; each registers under the `liberator.sinks` entry point."""
