-- The right to be forgotten reaches the membership history: an erased customer's published changes are
-- deleted at once, and the ones still waiting for the relay (their exits among them) once published.
ALTER TABLE segment_changes ADD COLUMN erase_after_publish boolean NOT NULL DEFAULT false;
