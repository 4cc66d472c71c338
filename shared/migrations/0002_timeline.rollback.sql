DO $$
DECLARE generation text;
BEGIN
    FOR generation IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'timeline\_g%' LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', generation);
    END LOOP;
END
$$;
DROP TABLE timeline_active;
DROP FUNCTION timeline_create_generation(text);
