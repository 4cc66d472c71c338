-- Timeline generations. Each generation is a schema holding one complete timeline projection; the
-- projector and the read API use the one named in timeline_active. A rebuild fills a new generation
-- from the allowed stream, then switches the pointer in one transaction: reads never see a half-built one.
CREATE TABLE timeline_active (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation text NOT NULL
);

CREATE FUNCTION timeline_create_generation(generation text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE SCHEMA %I', generation);
    -- Hash partitions by customer keep every customer's rows in one partition and let the table grow to
    -- billions of rows; the key (customer_id, event_id) makes a replayed event a no-op.
    EXECUTE format('CREATE TABLE %I.events (
        customer_id text NOT NULL,
        occurred_at timestamptz NOT NULL,
        event_id    text NOT NULL,
        type        text NOT NULL,
        channel     text NOT NULL,
        properties  jsonb NOT NULL,
        received_at timestamptz NOT NULL,
        source      text NOT NULL,
        PRIMARY KEY (customer_id, event_id)
    ) PARTITION BY HASH (customer_id)', generation);
    FOR part IN 0..15 LOOP
        EXECUTE format('CREATE TABLE %1$I.events_p%2$s PARTITION OF %1$I.events
                        FOR VALUES WITH (MODULUS 16, REMAINDER %2$s)', generation, part);
    END LOOP;
    -- The read path: one customer's newest page, in occurred_at order whatever the arrival order.
    EXECUTE format('CREATE INDEX events_newest_first ON %I.events (customer_id, occurred_at DESC, event_id DESC)',
                   generation);
    EXECUTE format('CREATE TABLE %I.profiles (
        customer_id     text PRIMARY KEY,
        first_seen      timestamptz NOT NULL,
        last_seen       timestamptz NOT NULL,
        event_count     bigint NOT NULL,
        purchase_count  bigint NOT NULL,
        purchase_amount numeric NOT NULL
    )', generation);
    EXECUTE format('CREATE TABLE %I.profile_counts (
        customer_id text NOT NULL,
        dimension   text NOT NULL CHECK (dimension IN (''channel'', ''type'')),
        value       text NOT NULL,
        count       bigint NOT NULL,
        PRIMARY KEY (customer_id, dimension, value)
    )', generation);
END
$$;

DO $$ BEGIN PERFORM timeline_create_generation('timeline_g1'); END $$;
INSERT INTO timeline_active (generation) VALUES ('timeline_g1');
