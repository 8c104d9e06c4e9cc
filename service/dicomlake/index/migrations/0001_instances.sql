-- Core index: partitions, instances (two-phase: pending -> committed), change feed, deletion queue.

CREATE TABLE partitions (
    partition_key integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO partitions (name) VALUES ('Microsoft.Default');

-- One number per stored version of an instance; part of the blob name, so a replaced instance never
-- overwrites the file that readers of the previous version are streaming.
CREATE SEQUENCE instance_watermark_seq;

CREATE TABLE instances (
    watermark bigint PRIMARY KEY,
    partition_key integer NOT NULL REFERENCES partitions,
    study_uid text NOT NULL,
    series_uid text NOT NULL,
    sop_uid text NOT NULL,
    -- 1 = pending (reserved, blob being written; invisible to search and retrieve), 2 = committed
    status smallint NOT NULL CHECK (status IN (1, 2)),
    sop_class_uid text NOT NULL,
    transfer_syntax_uid text,
    blob_name text NOT NULL,
    size bigint,
    sha256 bytea,
    blob_etag text,
    metadata jsonb,
    -- where BulkDataURI values sit in the blob: {"<path>": [offset, length]}; pixel data geometry
    bulk jsonb,
    pixel_data jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz,
    -- pending rows only: after this moment the janitor removes the row and its blob
    lease_expires_at timestamptz
);
CREATE UNIQUE INDEX instances_committed_uid ON instances (partition_key, study_uid, series_uid, sop_uid) WHERE status = 2;
CREATE UNIQUE INDEX instances_pending_uid ON instances (partition_key, study_uid, series_uid, sop_uid) WHERE status = 1;
CREATE INDEX instances_study ON instances (partition_key, study_uid, series_uid) WHERE status = 2;
CREATE INDEX instances_pending_lease ON instances (lease_expires_at) WHERE status = 1;

-- Change feed. Sequence numbers are taken inside the committing transaction while it holds a
-- transaction-level advisory lock, so they are assigned in commit order: a reader never sees an entry
-- appear behind one it has already read.
CREATE SEQUENCE changefeed_seq;
CREATE TABLE changefeed (
    sequence bigint PRIMARY KEY,
    partition_key integer NOT NULL REFERENCES partitions,
    study_uid text NOT NULL,
    series_uid text NOT NULL,
    sop_uid text NOT NULL,
    action text NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    watermark bigint NOT NULL,
    blob_name text,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX changefeed_time ON changefeed (occurred_at);
CREATE INDEX changefeed_watermark ON changefeed (watermark);

-- Blobs to remove (deleted or replaced instances, abandoned uploads), drained by a background worker
-- with FOR UPDATE SKIP LOCKED so any replica can do the work and none does it twice.
CREATE TABLE deletion_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    blob_name text NOT NULL,
    reason text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text
);
CREATE INDEX deletion_queue_due ON deletion_queue (next_attempt_at);
