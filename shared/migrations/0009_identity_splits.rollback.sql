DROP TABLE identity_splits;
DELETE FROM identity_changes WHERE change = 'split';
ALTER TABLE identity_changes DROP CONSTRAINT identity_changes_change_check;
ALTER TABLE identity_changes ADD CONSTRAINT identity_changes_change_check
    CHECK (change IN ('linked', 'merged', 'conflict'));
DROP INDEX identity_resolutions_by_profile;
ALTER TABLE identity_resolutions DROP COLUMN identifiers;
