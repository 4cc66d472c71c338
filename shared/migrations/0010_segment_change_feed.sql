-- A segment's change feed (GET /v1/segments/{id}/changes) pages newest first by the outbox's sequence.
CREATE INDEX segment_changes_feed ON segment_changes (segment_id, sequence) WHERE published;
