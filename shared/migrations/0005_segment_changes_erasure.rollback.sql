ALTER TABLE segment_changes DROP COLUMN erase_after_publish;
