"""liberator: one small daemon per legacy database, turning its rows into Avro events on Kafka."""

__version__ = "0.1.0"
