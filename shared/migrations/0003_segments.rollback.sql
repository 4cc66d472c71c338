DROP TABLE segment_offsets;
DROP TABLE segment_changes;
DROP TABLE segment_members;
DROP TABLE segment_customers;
DROP TABLE segment_definitions;
