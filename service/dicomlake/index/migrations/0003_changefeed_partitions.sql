-- Change feed read per partition (issue 6): pages are read in sequence order within one partition,
-- optionally bounded by time.
CREATE INDEX changefeed_partition_sequence ON changefeed (partition_key, sequence);
CREATE INDEX changefeed_partition_time ON changefeed (partition_key, occurred_at);

-- Deletion queue health: rows whose retries are exhausted are counted on every health check.
CREATE INDEX deletion_queue_attempts ON deletion_queue (attempts);
