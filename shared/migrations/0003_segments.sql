-- Segments. Definitions are the API's durable copy (workers learn them from segment.definitions);
-- everything else is written by the evaluator, one transaction per batch of input.

CREATE TABLE segment_definitions (
    segment_id text PRIMARY KEY,
    version    integer NOT NULL,
    name       text NOT NULL,
    rule       jsonb NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One row per known customer. The digest is opaque to SQL (compact JSON bytes); times the evaluator
-- compares are integer microseconds, exactly as the domain computes them.
CREATE TABLE segment_customers (
    customer_id    text PRIMARY KEY,
    digest         bytea NOT NULL,
    evaluated_at   bigint NOT NULL,
    revision       bigint NOT NULL,
    next_change_at bigint
);
CREATE INDEX segment_customers_due ON segment_customers (next_change_at) WHERE next_change_at IS NOT NULL;
CREATE INDEX segment_customers_by_revision ON segment_customers (revision);

CREATE TABLE segment_members (
    segment_id  text NOT NULL,
    customer_id text NOT NULL,
    version     integer NOT NULL,
    entered_at  timestamptz NOT NULL,
    PRIMARY KEY (segment_id, customer_id)
);
CREATE INDEX segment_members_by_customer ON segment_members (customer_id);

-- Every membership change, written in the transaction that decided it (an outbox): the relay publishes
-- unpublished rows to segment.membership in sequence order and marks them. Rows also feed the stats.
CREATE TABLE segment_changes (
    change_id   text PRIMARY KEY,
    sequence    bigserial NOT NULL,
    segment_id  text NOT NULL,
    version     integer NOT NULL,
    customer_id text NOT NULL,
    transition  text NOT NULL CHECK (transition IN ('entered', 'exited')),
    at          timestamptz NOT NULL,
    reason      text NOT NULL,
    received_at timestamptz,
    published   boolean NOT NULL DEFAULT false
);
CREATE INDEX segment_changes_unpublished ON segment_changes (sequence) WHERE NOT published;
CREATE INDEX segment_changes_by_segment ON segment_changes (segment_id, at);

-- The tracking rows that make evaluation exactly-once: the next allowed-stream offset per partition,
-- advanced in the same transaction as the state it produced.
CREATE TABLE segment_offsets (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
