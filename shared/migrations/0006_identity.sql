-- The identity graph, written by the identity resolver (services/identity), one batch per transaction.
-- Who holds each identifier: a customer id is held by the profile it names.
CREATE TABLE identity_links (
    kind       text NOT NULL,
    value      text NOT NULL,
    profile_id text NOT NULL,
    linked_at  timestamptz NOT NULL,
    caused_by  text NOT NULL,  -- the event_id of the touch that linked it
    PRIMARY KEY (kind, value)
);
CREATE INDEX identity_links_by_profile ON identity_links (profile_id);

-- Every link, merge and refused link, with the touch that caused it: why two ids are (not) together.
CREATE TABLE identity_changes (
    change_id        text PRIMARY KEY,  -- <event_id>:<n>, so a replayed batch is stored once
    log_offset       bigint NOT NULL,
    change           text NOT NULL CHECK (change IN ('linked', 'merged', 'conflict')),
    profile_id       text NOT NULL,
    other_profile_id text,
    kind             text NOT NULL,
    value            text NOT NULL,
    reason           text,
    caused_by        text NOT NULL,
    at               timestamptz NOT NULL
);
CREATE INDEX identity_changes_by_profile ON identity_changes (profile_id, log_offset);
CREATE INDEX identity_changes_by_other ON identity_changes (other_profile_id, log_offset);

-- A profile absorbed by a merge, and the profile that holds its identifiers now: reads redirect.
CREATE TABLE identity_redirects (
    absorbed text PRIMARY KEY,
    survivor text NOT NULL
);
CREATE INDEX identity_redirects_by_survivor ON identity_redirects (survivor);

-- Which profile each touch of identity.inbound was resolved to, by its offset: a batch replayed after a
-- crash between this commit and Kafka's is published as it was decided, not decided again.
CREATE TABLE identity_resolutions (
    log_offset bigint PRIMARY KEY,
    event_id   text NOT NULL,
    profile_id text NOT NULL
);
