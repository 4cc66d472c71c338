UPDATE segment_customers c SET recent = convert_to(merged.points::text, 'UTF8')
FROM (
    SELECT customer_id, jsonb_agg(point) AS points
    FROM (
        SELECT customer_id, points FROM segment_points
        UNION ALL SELECT customer_id, recent FROM segment_customers
    ) parts, jsonb_array_elements(convert_from(parts.points, 'UTF8')::jsonb) point
    GROUP BY customer_id
) merged
WHERE merged.customer_id = c.customer_id;

DROP TABLE segment_points;
ALTER TABLE segment_customers RENAME COLUMN recent TO digest;
