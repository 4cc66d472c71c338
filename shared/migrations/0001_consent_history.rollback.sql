DROP TABLE consent_history;
