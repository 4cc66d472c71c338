-- A customer's digest is no longer one value rewritten whole on every batch. The customer's row keeps
-- only their recent touches (`recent`, fewer than 32, rewritten with the row); once there are that many
-- they move into a row of their own in segment_points, never rewritten, deleted once all of them have
-- expired. So a batch writes a bounded amount per customer whatever their history. Both hold compact
-- JSON arrays of touches, opaque to SQL. Existing digests become the recent touches; the next batch that
-- reaches their customer moves them out.

ALTER TABLE segment_customers RENAME COLUMN digest TO recent;

CREATE TABLE segment_points (
    customer_id text NOT NULL,
    newest_at   bigint NOT NULL,
    points      bytea NOT NULL
);
CREATE INDEX segment_points_by_customer ON segment_points (customer_id, newest_at);
