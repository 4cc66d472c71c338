DROP TABLE identity_resolutions;
DROP TABLE identity_redirects;
DROP TABLE identity_changes;
DROP TABLE identity_links;
