-- Splits: the identifiers each touch carried (as kind:value, what the resolver decided by), so a split
-- knows which touches go with the identifier it splits off; and each split carried out, by its offset on
-- identity.inbound, so a batch replayed after a crash republishes the same touches.
ALTER TABLE identity_resolutions ADD COLUMN identifiers text[] NOT NULL DEFAULT '{}';
CREATE INDEX identity_resolutions_by_profile ON identity_resolutions (profile_id);

ALTER TABLE identity_changes DROP CONSTRAINT identity_changes_change_check;
ALTER TABLE identity_changes ADD CONSTRAINT identity_changes_change_check
    CHECK (change IN ('linked', 'merged', 'conflict', 'split'));

CREATE TABLE identity_splits (
    log_offset bigint PRIMARY KEY,
    profile_id text NOT NULL,  -- the profile the identifier left
    split_off  text NOT NULL,
    moved      jsonb NOT NULL  -- [[inbound offset, event_id, profile it had been resolved to], ...]
);
