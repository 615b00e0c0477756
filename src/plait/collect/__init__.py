"""Collect: the Segment-compatible tracking API, validation, enrichment, de-duplication,
importers and the replication of events to the lake."""
