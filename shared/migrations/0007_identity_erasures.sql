-- An erasure the identity resolver carried out, by its offset on identity.inbound: the profiles a merge
-- had joined to the erased one, so a batch replayed after a crash erases them too (the graph that named
-- them is gone by then).
CREATE TABLE identity_erasures (
    log_offset bigint PRIMARY KEY,
    absorbed   text[] NOT NULL
);
