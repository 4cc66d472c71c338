"""Touchline's common code: the wire contract, settings and the Kafka, PostgreSQL and metrics adapters."""
