-- The consent audit trail: every ConsentChange of the customer log, written by the consent filter.
-- Keyed by change_id, so a replayed record is stored once; ordered by its place in the customer log.
CREATE TABLE consent_history (
    change_id     text PRIMARY KEY,
    customer_id   text NOT NULL,
    purpose       text NOT NULL,
    status        text NOT NULL CHECK (status IN ('granted', 'denied')),
    changed_at    timestamptz NOT NULL,
    source        text NOT NULL,
    erasure       boolean NOT NULL DEFAULT false,
    log_partition integer NOT NULL,
    log_offset    bigint NOT NULL
);

CREATE INDEX consent_history_by_customer ON consent_history (customer_id, log_offset DESC);
