-- Extended query tags API and long-running operations (issue 4), on the tables of migration 0002.
--
-- * operations: Microsoft's status names (`completed`, not `succeeded`), a lease owner (the replica
--   holding the lease; another takes over when `lease_expires_at` passes), resource locations and a
--   free-form result, so any kind of job (`type`) can report through /v2/operations/{id}.
-- * dl_eqt_index: values are checked against the tag's VR (length, format, number) and an instance
--   with a bad value gets one error row per tag instead of a value; empty values are skipped.
-- * error_count follows deletions of error rows (an instance deleted or replaced).

ALTER TABLE operations DROP CONSTRAINT operations_status_check;
ALTER TABLE operations ADD CONSTRAINT operations_status_check
    CHECK (status IN ('notStarted', 'running', 'completed', 'failed', 'canceled'));
ALTER TABLE operations
    ADD COLUMN lease_owner text,
    ADD COLUMN resource_locations text[] NOT NULL DEFAULT '{}',
    ADD COLUMN results jsonb;

CREATE INDEX extended_query_tag_errors_list ON extended_query_tag_errors (tag_key, created_at, watermark);

-- Why one DICOM JSON value cannot be indexed for a VR (an error code), or NULL when it can (or is empty).
CREATE FUNCTION dl_eqt_problem(vr text, v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN NULL
        WHEN vr IN ('IS', 'DS', 'SL', 'SS', 'UL', 'US', 'FL', 'FD')
            THEN CASE WHEN dl_num(v #>> '{}') IS NULL THEN 'InvalidValue'
                WHEN vr IN ('IS', 'SL', 'SS', 'UL', 'US') AND dl_num(v #>> '{}') <> trunc(dl_num(v #>> '{}'))
                    THEN 'InvalidValue'
                WHEN vr = 'US' AND NOT dl_num(v #>> '{}') BETWEEN 0 AND 65535 THEN 'ValueOutOfRange'
                WHEN vr = 'SS' AND NOT dl_num(v #>> '{}') BETWEEN -32768 AND 32767 THEN 'ValueOutOfRange'
                WHEN vr = 'UL' AND NOT dl_num(v #>> '{}') BETWEEN 0 AND 4294967295 THEN 'ValueOutOfRange'
                WHEN vr = 'SL' AND NOT dl_num(v #>> '{}') BETWEEN -2147483648 AND 2147483647 THEN 'ValueOutOfRange'
                WHEN vr = 'IS' AND length(v #>> '{}') > 12 THEN 'ValueTooLong'
                WHEN vr = 'DS' AND length(v #>> '{}') > 16 THEN 'ValueTooLong'
            END
        WHEN vr = 'PN' THEN CASE WHEN jsonb_typeof(v) NOT IN ('object', 'string') THEN 'InvalidValue'
                WHEN length(coalesce(v ->> 'Alphabetic', '')) > 64 OR length(coalesce(v ->> 'Ideographic', '')) > 64
                    OR length(coalesce(v ->> 'Phonetic', '')) > 64 THEN 'ValueTooLong'
            END
        WHEN jsonb_typeof(v) <> 'string' THEN 'InvalidValue'
        WHEN vr = 'DA' THEN CASE WHEN dl_da(v #>> '{}') IS NULL THEN 'InvalidValue' END
        WHEN vr = 'TM' THEN CASE WHEN dl_tm(v #>> '{}') IS NULL THEN 'InvalidValue' END
        WHEN vr = 'DT' THEN CASE WHEN dl_dt(v #>> '{}') IS NULL THEN 'InvalidValue' END
        WHEN vr = 'AS' THEN CASE WHEN (v #>> '{}') !~ '^\d{3}[DWMY]$' THEN 'InvalidValue' END
        WHEN length(v #>> '{}') > CASE vr WHEN 'AE' THEN 16 WHEN 'CS' THEN 16 WHEN 'SH' THEN 16 WHEN 'LO' THEN 64
                WHEN 'UI' THEN 64 ELSE 1024 END THEN 'ValueTooLong'
    END;

-- Index the values of the given tags (all live tags when NULL) for committed instances whose
-- watermark lies in [lo, hi]. Idempotent (values and errors are keyed). Returns the number of
-- instances examined.
CREATE OR REPLACE FUNCTION dl_eqt_index(lo bigint, hi bigint, tags integer[]) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    examined bigint;
BEGIN
    WITH t AS (
        SELECT q.tag_key, q.path, q.vr, q.private_creator FROM extended_query_tags q
        WHERE q.status <> 'Deleting' AND (tags IS NULL OR q.tag_key = ANY (tags))
    ),
    src AS (
        SELECT t.tag_key, t.vr, i.watermark, i.partition_key, i.study_uid, i.series_uid, i.sop_uid,
            i.metadata -> t.path AS a,
            t.private_creator IS NULL OR (i.metadata #>> ARRAY[substr(t.path, 1, 4) || '00' || substr(t.path, 5, 2),
                'Value', '0']) = t.private_creator AS creator_ok
        FROM instances i CROSS JOIN t
        WHERE i.status = 2 AND i.watermark BETWEEN lo AND hi AND i.metadata ? t.path
    ),
    vals AS (
        SELECT src.*, dl_eqt_value(src.vr, v.j) AS value, dl_eqt_problem(src.vr, v.j) AS problem
        FROM src CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(src.a -> 'Value') = 'array' THEN src.a -> 'Value' ELSE '[]'::jsonb END) AS v(j)
        WHERE src.creator_ok
    ),
    bad AS (
        INSERT INTO extended_query_tag_errors (tag_key, watermark, partition_key, study_uid, series_uid, sop_uid,
            error_code)
        SELECT DISTINCT ON (tag_key, watermark) tag_key, watermark, partition_key, study_uid, series_uid, sop_uid,
            problem FROM vals WHERE problem IS NOT NULL
        ORDER BY tag_key, watermark, problem
        ON CONFLICT DO NOTHING
    )
    INSERT INTO extended_query_tag_values (tag_key, watermark, partition_key, study_uid, series_uid, value)
    SELECT DISTINCT tag_key, watermark, partition_key, study_uid, series_uid, value FROM vals
    WHERE problem IS NULL AND value IS NOT NULL AND value <> ''
    ON CONFLICT DO NOTHING;
    UPDATE extended_query_tags q SET error_count = (SELECT count(*) FROM extended_query_tag_errors e
        WHERE e.tag_key = q.tag_key)
    WHERE q.status <> 'Deleting' AND (tags IS NULL OR q.tag_key = ANY (tags))
        AND EXISTS (SELECT 1 FROM extended_query_tag_errors e WHERE e.tag_key = q.tag_key AND e.watermark BETWEEN lo AND hi);
    SELECT count(*) INTO examined FROM instances WHERE status = 2 AND watermark BETWEEN lo AND hi;
    RETURN examined;
END
$$;

CREATE FUNCTION dl_eqt_errors_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE extended_query_tags q SET error_count = (SELECT count(*) FROM extended_query_tag_errors e
        WHERE e.tag_key = q.tag_key)
    WHERE q.tag_key IN (SELECT DISTINCT o.tag_key FROM old_rows o);
    RETURN NULL;
END
$$;

CREATE TRIGGER extended_query_tag_errors_delete AFTER DELETE ON extended_query_tag_errors
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dl_eqt_errors_deleted();
