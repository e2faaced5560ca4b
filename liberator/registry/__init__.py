"""liberator's embedded Confluent-compatible schema registry and the registry client.

Submodules: ``server`` (REST API, :class:`~liberator.embedded.registry.server.RegistryServer`, ``serve``),
``store`` (SQLite state), ``compatibility`` (Avro compatibility rules) and ``client``
(:class:`~liberator.registry.client.RegistryClient`, used by the runtime with any registry).
Nothing is imported here so that using the client does not load the server.
"""
