DROP TABLE identity_erasures;
