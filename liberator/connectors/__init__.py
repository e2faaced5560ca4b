"""Source connectors shipped with liberator; each registers under the `liberator.sources` entry point."""
