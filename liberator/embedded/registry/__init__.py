"""The embedded Confluent-compatible schema registry: HTTP API (``api``), SQLite store (``store``), server
(``server``, also ``liberator registry serve``) and a launcher that runs it as a child process (``child``).
Compatibility rules live in ``liberator.registry.compatibility``, shared with the client's explanations."""
