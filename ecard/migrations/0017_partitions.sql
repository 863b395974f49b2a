-- The append-only tables that grow without end, partitioned by month (UTC), with a default partition as a
-- backstop for rows no monthly partition takes yet. See docs/partitions.md.
--
-- verifications (verified_at) and audit_log (at). Every unique key of a partitioned table must hold the
-- partition key, so the primary keys become (id, time). Not partitioned, and why, in docs/partitions.md:
-- ledger entries (no time of their own, a balance check per transfer, kept for good), the outbox (rows
-- change while they are delivered, and delivery attempts refer to them), risk events (operators act on them).

-- One monthly partition of `parent` for [month, month + 1 month) in UTC, named <parent>_YYYY_MM, unless a
-- table of that name exists already. Rows of that month that went to the default partition meanwhile move
-- into it. Its name, or NULL when it existed already.
CREATE FUNCTION ecard_month_partition(parent text, key text, month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := format('%s_%s', parent, to_char(month, 'YYYY_MM'));
    fallback text := parent || '_default';
    low timestamptz := date_trunc('month', month)::timestamp AT TIME ZONE 'UTC';
    high timestamptz := (date_trunc('month', month) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    stray boolean;
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)', fallback, key, key)
        INTO stray USING low, high;
    IF stray THEN
        -- the default partition may not hold rows of a new partition's range: take them out, then put it back
        EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', parent, fallback);
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', name, parent, low, high);
        EXECUTE format('INSERT INTO %I SELECT * FROM %I WHERE %I >= $1 AND %I < $2', name, fallback, key, key)
            USING low, high;
        EXECUTE format('DELETE FROM %I WHERE %I >= $1 AND %I < $2', fallback, key, key) USING low, high;
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I DEFAULT', parent, fallback);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', name, parent, low, high);
    END IF;
    IF parent = 'verifications' THEN
        -- a code is used once: a unique key cannot span partitions, so each month holds its own (docs/partitions.md)
        EXECUTE format('CREATE UNIQUE INDEX %I ON %I (cti)', name || '_cti', name);
    END IF;
    RETURN name;
END $$;

-- verifications: the hot insert. The statement that inserts a verification reads the card in the same
-- statement and inserts nothing without it, and the service checks the item against the catalog first:
-- the foreign keys to cards and catalog_items cost two index probes and two row locks per verification and
-- are dropped; cards and catalog items are never deleted. No query reads by merchant: that index is dropped.
ALTER TABLE verifications RENAME TO verifications_unpartitioned;
ALTER TABLE verifications_unpartitioned RENAME CONSTRAINT verifications_pkey TO verifications_unpartitioned_pkey;
ALTER TABLE verifications_unpartitioned RENAME CONSTRAINT verifications_cti_key TO verifications_unpartitioned_cti;
ALTER INDEX verifications_card RENAME TO verifications_unpartitioned_card;
ALTER INDEX verifications_item_time RENAME TO verifications_unpartitioned_item_time;
ALTER INDEX verifications_merchant RENAME TO verifications_unpartitioned_merchant;

CREATE TABLE verifications (
    LIKE verifications_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED,
    PRIMARY KEY (verification_id, verified_at),
    FOREIGN KEY (via_issuer) REFERENCES partners (issuer)
) PARTITION BY RANGE (verified_at);
CREATE INDEX verifications_card ON verifications (card_id, verified_at DESC);
CREATE INDEX verifications_item_time ON verifications (item_code, verified_at);
CREATE TABLE verifications_default PARTITION OF verifications DEFAULT;
CREATE UNIQUE INDEX verifications_default_cti ON verifications_default (cti);

-- audit_log: its entries are sealed in (xid, entry_id) order, which partitioning keeps as it is.
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER TABLE audit_log_unpartitioned RENAME CONSTRAINT audit_log_pkey TO audit_log_unpartitioned_pkey;
ALTER INDEX audit_log_seal_order RENAME TO audit_log_unpartitioned_seal_order;

CREATE TABLE audit_log (
    LIKE audit_log_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY,
    PRIMARY KEY (entry_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX audit_log_seal_order ON audit_log (xid, entry_id);
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

-- the months that hold rows already, and this one and the next three
SELECT ecard_month_partition(t.parent, t.key, m::date)
FROM (VALUES
        ('verifications', 'verified_at', (SELECT min(verified_at) FROM verifications_unpartitioned)),
        ('audit_log', 'at', (SELECT min(at) FROM audit_log_unpartitioned))
     ) AS t (parent, key, oldest),
     generate_series(
        date_trunc('month', LEAST(COALESCE(t.oldest, now()), now()) AT TIME ZONE 'UTC'),
        date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
        interval '1 month'
     ) AS m;

INSERT INTO verifications SELECT * FROM verifications_unpartitioned;
INSERT INTO audit_log OVERRIDING SYSTEM VALUE SELECT * FROM audit_log_unpartitioned;
SELECT setval(pg_get_serial_sequence('audit_log', 'entry_id'), COALESCE(max(entry_id), 0) + 1, false) FROM audit_log;
DROP TABLE verifications_unpartitioned;
DROP TABLE audit_log_unpartitioned;

CREATE TRIGGER verifications_append_only BEFORE UPDATE OR DELETE ON verifications
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
