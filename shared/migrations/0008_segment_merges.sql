-- Identity merges in the segment evaluator. Each side of a merge arrives on its own profile's partition
-- and is recorded here; the second to arrive carries the merge out. A merge carried out stays as a
-- redirect: a merge into a profile absorbed since then reaches the profile that holds it now.
CREATE TABLE segment_merges (
    absorbed text PRIMARY KEY,
    survivor text NOT NULL,
    sealed   boolean NOT NULL DEFAULT false, -- the absorbed side arrived: no touch of its own follows
    allowed  boolean,                        -- the survivor's side: may segments take the touches over
    merged   boolean NOT NULL DEFAULT false
);
CREATE INDEX segment_merges_by_survivor ON segment_merges (survivor);

-- Bumped when a worker other than the partition's owner may have written the customer's digest (a
-- merge): a digest cached at another epoch is read again.
ALTER TABLE segment_customers ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
