DROP INDEX segment_changes_feed;
