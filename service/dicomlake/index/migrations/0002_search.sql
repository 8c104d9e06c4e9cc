-- QIDO-RS search index (issue 4): study and series tables maintained by triggers on `instances`,
-- normalisation helpers, instance-level indexes, extended query tags and long-running operations.
--
-- The study/series rows are recomputed, set-based, for every study or series a statement touches:
-- a row that becomes committed (status 2), a committed row deleted or replaced, or a bulk INSERT/COPY
-- of committed rows. Study- and series-level values come from the latest committed instance
-- (highest watermark), as the Azure service does ("latest instance wins"). Neither the store commit
-- path nor delete needs to know these tables exist.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Case- and accent-insensitive form of a text (person names). IMMUTABLE wrapper so it can be indexed.
CREATE FUNCTION dl_norm(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN lower(public.unaccent('public.unaccent'::regdictionary, t));

-- A PN value of DICOM JSON as one string: 'Alphabetic=Ideographic=Phonetic', trailing '=' removed.
CREATE FUNCTION dl_pn(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE jsonb_typeof(v)
        WHEN 'object' THEN nullif(rtrim(concat_ws('=', coalesce(v ->> 'Alphabetic', ''),
            coalesce(v ->> 'Ideographic', ''), coalesce(v ->> 'Phonetic', '')), '='), '')
        WHEN 'string' THEN v #>> '{}'
    END;

-- DA as 'YYYYMMDD' (the old 'YYYY.MM.DD' form too), NULL when not a date.
CREATE FUNCTION dl_da(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN btrim(t) ~ '^\d{4}\.?\d{2}\.?\d{2}$' THEN replace(btrim(t), '.', '') END;

-- TM as 'HHMMSS.FFFFFF' (missing parts are zero), NULL when not a time.
CREATE FUNCTION dl_tm(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN replace(btrim(t), ':', '') ~ '^\d{2}(\d{2}(\d{2}(\.\d{0,6})?)?)?$'
        THEN rpad(split_part(replace(btrim(t), ':', ''), '.', 1), 6, '0') || '.'
            || rpad(split_part(replace(btrim(t), ':', ''), '.', 2), 6, '0')
    END;

-- DT as 'YYYYMMDDHHMMSS.FFFFFF' (offset ignored), NULL when not a date-time.
CREATE FUNCTION dl_dt(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN btrim(t) ~ '^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{0,6})?)?)?)?)?)?([+-]\d{4})?$'
        THEN rpad(split_part(substring(btrim(t) FROM '^[0-9.]+'), '.', 1), 14, '0')
            || '.' || rpad(split_part(substring(btrim(t) FROM '^[0-9.]+'), '.', 2), 6, '0')
    END;

-- IS/DS/numbers as numeric, NULL when not a number.
CREATE FUNCTION dl_num(t text) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN btrim(t) ~ '^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$' THEN btrim(t)::numeric END;

-- Regular expression matching a PN query value (already normalised with dl_norm) with * and ?
-- wildcards against the whole of any component group of a stored normalised PN ('a=i=p').
CREATE FUNCTION dl_pn_regex(q text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN '(^|=)' || replace(replace(regexp_replace(q, '([.+^$(){}|\[\]\\])', '\\\1', 'g'), '*', '[^=]*'), '?', '[^=]')
        || '($|=)';

CREATE TABLE study_search (
    partition_key integer NOT NULL REFERENCES partitions,
    study_uid text NOT NULL,
    latest_watermark bigint NOT NULL,
    series_count integer NOT NULL,
    instance_count integer NOT NULL,
    modalities text[] NOT NULL DEFAULT '{}',
    patient_id text,
    patient_name text,
    patient_name_norm text,
    patient_birth_date text,
    patient_sex text,
    study_date text,
    study_time text,
    study_datetime text,
    accession_number text,
    study_id text,
    study_description text,
    referring_physician_name text,
    referring_physician_name_norm text,
    PRIMARY KEY (partition_key, study_uid)
);
CREATE INDEX study_search_patient_id ON study_search (partition_key, patient_id);
CREATE INDEX study_search_accession ON study_search (partition_key, accession_number);
CREATE INDEX study_search_study_id ON study_search (partition_key, study_id);
CREATE INDEX study_search_birth_date ON study_search (partition_key, patient_birth_date);
CREATE INDEX study_search_date ON study_search (partition_key, study_date, study_uid);
CREATE INDEX study_search_datetime ON study_search (partition_key, study_datetime);
CREATE INDEX study_search_modalities ON study_search USING gin (modalities);
CREATE INDEX study_search_patient_name_trgm ON study_search USING gin (patient_name_norm gin_trgm_ops);
CREATE INDEX study_search_referring_trgm ON study_search USING gin (referring_physician_name_norm gin_trgm_ops);
CREATE INDEX study_search_patient_id_trgm ON study_search USING gin (patient_id gin_trgm_ops);
CREATE INDEX study_search_description_trgm ON study_search USING gin (study_description gin_trgm_ops);

CREATE TABLE series_search (
    partition_key integer NOT NULL REFERENCES partitions,
    study_uid text NOT NULL,
    series_uid text NOT NULL,
    latest_watermark bigint NOT NULL,
    instance_count integer NOT NULL,
    modality text,
    series_description text,
    series_number numeric,
    pps_start_date text,
    pps_start_time text,
    manufacturer_model_name text,
    PRIMARY KEY (partition_key, study_uid, series_uid)
);
CREATE INDEX series_search_uid ON series_search (partition_key, series_uid);
CREATE INDEX series_search_modality ON series_search (partition_key, modality);
CREATE INDEX series_search_pps_date ON series_search (partition_key, pps_start_date);

-- Instance level searches read `instances` itself (committed rows only).
CREATE INDEX instances_search_latest ON instances (partition_key, study_uid, series_uid, watermark) WHERE status = 2;
CREATE INDEX instances_search_sop ON instances (partition_key, sop_uid) WHERE status = 2;
CREATE INDEX instances_search_class ON instances (partition_key, sop_class_uid) WHERE status = 2;
CREATE INDEX instances_search_order ON instances
    (partition_key, study_uid, series_uid, dl_num(metadata #>> '{00200013,Value,0}'), sop_uid) WHERE status = 2;

-- Recompute the series and study rows of the given (partition, study, series) keys from `instances`.
CREATE FUNCTION dl_search_refresh(p integer[], st text[], se text[]) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    studies integer;
BEGIN
    IF p IS NULL OR cardinality(p) = 0 THEN
        RETURN;
    END IF;
    -- Serialise maintenance per study (in key order, so statements cannot deadlock); a statement
    -- touching many studies (bulk load) takes the exclusive global key instead of one per study.
    SELECT count(*) INTO studies FROM (SELECT DISTINCT k.pk, k.su FROM unnest(p, st) AS k(pk, su)) d;
    IF studies > 32 THEN
        PERFORM pg_advisory_xact_lock(7365617263680001);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(7365617263680001);
        PERFORM pg_advisory_xact_lock(hashtextextended(d.pk::text || '/' || d.su, 0))
        FROM (SELECT DISTINCT k.pk, k.su FROM unnest(p, st) AS k(pk, su) ORDER BY 1, 2) d;
    END IF;

    WITH k AS (SELECT DISTINCT x.pk, x.su, x.se FROM unnest(p, st, se) AS x(pk, su, se)),
    agg AS (
        SELECT k.pk, k.su, k.se, c.n, c.w
        FROM k CROSS JOIN LATERAL (
            SELECT count(*) AS n, max(i.watermark) AS w FROM instances i
            WHERE i.partition_key = k.pk AND i.study_uid = k.su AND i.series_uid = k.se AND i.status = 2
        ) c
    ),
    gone AS (
        DELETE FROM series_search s USING agg
        WHERE agg.n = 0 AND s.partition_key = agg.pk AND s.study_uid = agg.su AND s.series_uid = agg.se
    )
    INSERT INTO series_search AS s (partition_key, study_uid, series_uid, latest_watermark, instance_count, modality,
        series_description, series_number, pps_start_date, pps_start_time, manufacturer_model_name)
    SELECT agg.pk, agg.su, agg.se, agg.w, agg.n,
        i.metadata #>> '{00080060,Value,0}',
        i.metadata #>> '{0008103E,Value,0}',
        dl_num(i.metadata #>> '{00200011,Value,0}'),
        dl_da(i.metadata #>> '{00400244,Value,0}'),
        dl_tm(i.metadata #>> '{00400245,Value,0}'),
        i.metadata #>> '{00081090,Value,0}'
    FROM agg JOIN instances i ON i.watermark = agg.w
    WHERE agg.n > 0
    ON CONFLICT (partition_key, study_uid, series_uid) DO UPDATE SET
        latest_watermark = EXCLUDED.latest_watermark, instance_count = EXCLUDED.instance_count,
        modality = EXCLUDED.modality, series_description = EXCLUDED.series_description,
        series_number = EXCLUDED.series_number, pps_start_date = EXCLUDED.pps_start_date,
        pps_start_time = EXCLUDED.pps_start_time, manufacturer_model_name = EXCLUDED.manufacturer_model_name;

    WITH k AS (SELECT DISTINCT x.pk, x.su FROM unnest(p, st) AS x(pk, su)),
    agg AS (
        SELECT k.pk, k.su, c.nse, c.n, c.w, c.mods
        FROM k CROSS JOIN LATERAL (
            SELECT count(*) AS nse, coalesce(sum(s.instance_count), 0) AS n, max(s.latest_watermark) AS w,
                coalesce(array_agg(DISTINCT s.modality) FILTER (WHERE s.modality <> ''), '{}') AS mods
            FROM series_search s WHERE s.partition_key = k.pk AND s.study_uid = k.su
        ) c
    ),
    gone AS (
        DELETE FROM study_search s USING agg
        WHERE agg.nse = 0 AND s.partition_key = agg.pk AND s.study_uid = agg.su
    ),
    latest AS (
        SELECT agg.*, i.metadata AS m,
            dl_pn(i.metadata -> '00100010' -> 'Value' -> 0) AS pn,
            dl_pn(i.metadata -> '00080090' -> 'Value' -> 0) AS ref,
            dl_da(i.metadata #>> '{00080020,Value,0}') AS sd,
            dl_tm(i.metadata #>> '{00080030,Value,0}') AS stm
        FROM agg JOIN instances i ON i.watermark = agg.w
        WHERE agg.nse > 0
    )
    INSERT INTO study_search AS s (partition_key, study_uid, latest_watermark, series_count, instance_count,
        modalities, patient_id, patient_name, patient_name_norm, patient_birth_date, patient_sex, study_date,
        study_time, study_datetime, accession_number, study_id, study_description, referring_physician_name,
        referring_physician_name_norm)
    SELECT pk, su, w, nse, n, mods,
        m #>> '{00100020,Value,0}', pn, dl_norm(pn), dl_da(m #>> '{00100030,Value,0}'),
        m #>> '{00100040,Value,0}', sd, stm, sd || coalesce(stm, '000000.000000'),
        m #>> '{00080050,Value,0}', m #>> '{00200010,Value,0}', m #>> '{00081030,Value,0}',
        ref, dl_norm(ref)
    FROM latest
    ON CONFLICT (partition_key, study_uid) DO UPDATE SET
        latest_watermark = EXCLUDED.latest_watermark, series_count = EXCLUDED.series_count,
        instance_count = EXCLUDED.instance_count, modalities = EXCLUDED.modalities,
        patient_id = EXCLUDED.patient_id, patient_name = EXCLUDED.patient_name,
        patient_name_norm = EXCLUDED.patient_name_norm, patient_birth_date = EXCLUDED.patient_birth_date,
        patient_sex = EXCLUDED.patient_sex, study_date = EXCLUDED.study_date, study_time = EXCLUDED.study_time,
        study_datetime = EXCLUDED.study_datetime, accession_number = EXCLUDED.accession_number,
        study_id = EXCLUDED.study_id, study_description = EXCLUDED.study_description,
        referring_physician_name = EXCLUDED.referring_physician_name,
        referring_physician_name_norm = EXCLUDED.referring_physician_name_norm;
END
$$;

-- Extended query tags (Microsoft v2 compatible API). Values of every tag not being deleted are
-- indexed when an instance is committed (trigger below); a reindex operation covers older instances.
CREATE TABLE extended_query_tags (
    tag_key integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path text NOT NULL UNIQUE,
    vr text NOT NULL,
    private_creator text,
    level text NOT NULL CHECK (level IN ('Study', 'Series', 'Instance')),
    status text NOT NULL CHECK (status IN ('Adding', 'Ready', 'Deleting')),
    query_status text NOT NULL DEFAULT 'Enabled' CHECK (query_status IN ('Enabled', 'Disabled')),
    error_count integer NOT NULL DEFAULT 0,
    operation_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE extended_query_tag_values (
    tag_key integer NOT NULL REFERENCES extended_query_tags ON DELETE CASCADE,
    watermark bigint NOT NULL REFERENCES instances ON DELETE CASCADE,
    partition_key integer NOT NULL,
    study_uid text NOT NULL,
    series_uid text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (tag_key, watermark, value)
);
CREATE INDEX extended_query_tag_values_match ON extended_query_tag_values (tag_key, partition_key, value);
CREATE INDEX extended_query_tag_values_watermark ON extended_query_tag_values (watermark);

CREATE TABLE extended_query_tag_errors (
    tag_key integer NOT NULL REFERENCES extended_query_tags ON DELETE CASCADE,
    watermark bigint NOT NULL REFERENCES instances ON DELETE CASCADE,
    partition_key integer NOT NULL,
    study_uid text NOT NULL,
    series_uid text NOT NULL,
    sop_uid text NOT NULL,
    error_code text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tag_key, watermark)
);

-- The indexable form of one DICOM JSON value for a VR ('' when the value is invalid for the VR).
CREATE FUNCTION dl_eqt_value(vr text, v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN vr = 'PN' THEN dl_norm(dl_pn(v))
        WHEN vr = 'DA' THEN coalesce(dl_da(v #>> '{}'), '')
        WHEN vr = 'TM' THEN coalesce(dl_tm(v #>> '{}'), '')
        WHEN vr = 'DT' THEN coalesce(dl_dt(v #>> '{}'), '')
        WHEN vr IN ('IS', 'DS', 'SL', 'SS', 'UL', 'US', 'FL', 'FD', 'SV', 'UV')
            THEN coalesce(dl_num(v #>> '{}')::text, '')
        ELSE v #>> '{}'
    END;

-- Index the values of the given tags (all live tags when NULL) for committed instances whose
-- watermark lies in [lo, hi]. Returns the number of instances examined.
CREATE FUNCTION dl_eqt_index(lo bigint, hi bigint, tags integer[]) RETURNS bigint
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
        SELECT src.*, dl_eqt_value(src.vr, v.j) AS value
        FROM src CROSS JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(src.a -> 'Value') = 'array' THEN src.a -> 'Value' ELSE '[]'::jsonb END) AS v(j)
        WHERE src.creator_ok
    ),
    bad AS (
        INSERT INTO extended_query_tag_errors (tag_key, watermark, partition_key, study_uid, series_uid, sop_uid,
            error_code)
        SELECT DISTINCT ON (tag_key, watermark) tag_key, watermark, partition_key, study_uid, series_uid, sop_uid,
            'InvalidValue' FROM vals WHERE value = '' AND vr IN ('DA', 'TM', 'DT', 'IS', 'DS', 'SL', 'SS', 'UL',
            'US', 'FL', 'FD', 'SV', 'UV')
        ON CONFLICT DO NOTHING
    )
    INSERT INTO extended_query_tag_values (tag_key, watermark, partition_key, study_uid, series_uid, value)
    SELECT DISTINCT tag_key, watermark, partition_key, study_uid, series_uid, value FROM vals WHERE value IS NOT NULL
        AND NOT (value = '' AND vr IN ('DA', 'TM', 'DT', 'IS', 'DS', 'SL', 'SS', 'UL', 'US', 'FL', 'FD', 'SV', 'UV'))
    ON CONFLICT DO NOTHING;
    UPDATE extended_query_tags q SET error_count = (SELECT count(*) FROM extended_query_tag_errors e
        WHERE e.tag_key = q.tag_key)
    WHERE q.status <> 'Deleting' AND (tags IS NULL OR q.tag_key = ANY (tags))
        AND EXISTS (SELECT 1 FROM extended_query_tag_errors e WHERE e.tag_key = q.tag_key AND e.watermark BETWEEN lo AND hi);
    SELECT count(*) INTO examined FROM instances WHERE status = 2 AND watermark BETWEEN lo AND hi;
    RETURN examined;
END
$$;

-- Long-running operations (reindex). Any replica claims a runnable one with a lease; a crashed
-- worker's lease expires and another resumes from `cursor_watermark`.
CREATE TABLE operations (
    id uuid PRIMARY KEY,
    type text NOT NULL,
    status text NOT NULL CHECK (status IN ('notStarted', 'running', 'succeeded', 'failed', 'canceled')),
    percent_complete integer NOT NULL DEFAULT 0,
    tag_keys integer[] NOT NULL DEFAULT '{}',
    cursor_watermark bigint NOT NULL DEFAULT 0,
    max_watermark bigint NOT NULL DEFAULT 0,
    total bigint NOT NULL DEFAULT 0,
    done bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_runnable ON operations (created_at) WHERE status IN ('notStarted', 'running');

-- Trigger functions: collect the touched keys of committed rows and refresh them.
CREATE FUNCTION dl_search_after_insert() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
BEGIN
    PERFORM dl_search_refresh(array_agg(k.partition_key), array_agg(k.study_uid), array_agg(k.series_uid))
    FROM (SELECT DISTINCT n.partition_key, n.study_uid, n.series_uid FROM new_rows n WHERE n.status = 2) k;
    IF EXISTS (SELECT 1 FROM extended_query_tags WHERE status <> 'Deleting') THEN
        SELECT min(watermark), max(watermark) INTO lo, hi FROM new_rows WHERE status = 2;
        IF lo IS NOT NULL THEN
            PERFORM dl_eqt_index(lo, hi, NULL);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION dl_search_after_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    lo bigint;
    hi bigint;
BEGIN
    PERFORM dl_search_refresh(array_agg(k.partition_key), array_agg(k.study_uid), array_agg(k.series_uid))
    FROM (
        SELECT n.partition_key, n.study_uid, n.series_uid FROM new_rows n WHERE n.status = 2
        UNION
        SELECT o.partition_key, o.study_uid, o.series_uid FROM old_rows o WHERE o.status = 2
    ) k;
    IF EXISTS (SELECT 1 FROM extended_query_tags WHERE status <> 'Deleting') THEN
        DELETE FROM extended_query_tag_values v USING new_rows n WHERE v.watermark = n.watermark AND n.status = 2;
        DELETE FROM extended_query_tag_errors v USING new_rows n WHERE v.watermark = n.watermark AND n.status = 2;
        SELECT min(watermark), max(watermark) INTO lo, hi FROM new_rows WHERE status = 2;
        IF lo IS NOT NULL THEN
            PERFORM dl_eqt_index(lo, hi, NULL);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION dl_search_after_delete() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dl_search_refresh(array_agg(k.partition_key), array_agg(k.study_uid), array_agg(k.series_uid))
    FROM (SELECT DISTINCT o.partition_key, o.study_uid, o.series_uid FROM old_rows o WHERE o.status = 2) k;
    RETURN NULL;
END
$$;

CREATE TRIGGER instances_search_insert AFTER INSERT ON instances
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dl_search_after_insert();
CREATE TRIGGER instances_search_update AFTER UPDATE ON instances
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dl_search_after_update();
CREATE TRIGGER instances_search_delete AFTER DELETE ON instances
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION dl_search_after_delete();

-- Instances committed before this migration (an existing deployment) get their search rows now.
SELECT dl_search_refresh(array_agg(k.partition_key), array_agg(k.study_uid), array_agg(k.series_uid))
FROM (SELECT DISTINCT partition_key, study_uid, series_uid FROM instances WHERE status = 2) k;
