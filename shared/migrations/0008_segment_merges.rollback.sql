ALTER TABLE segment_customers DROP COLUMN epoch;
DROP TABLE segment_merges;
