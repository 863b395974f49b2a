-- Operators: all of an operator's sessions end at once by moving its session epoch (logout everywhere,
-- an account lock). Failed logins are no longer counted here: they are counted in Redis, per source
-- and per account, before any password is checked.
ALTER TABLE operators ADD COLUMN session_epoch integer NOT NULL DEFAULT 0;
ALTER TABLE operators DROP COLUMN failed_logins, DROP COLUMN locked_until;

-- Audit: writing an entry is one INSERT, with no lock; the sealer chains entries afterwards with a
-- keyed MAC (a key derived from the master key, which the database does not hold), in the order of
-- (inserting transaction, entry id). Entries already present are all of this migration's transaction,
-- so they are sealed first, in entry order. The unkeyed hashes they carried prove nothing that the
-- seals do not, and go.
ALTER TABLE audit_log ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE audit_log DROP COLUMN prev_hash, DROP COLUMN entry_hash;
CREATE INDEX audit_log_seal_order ON audit_log (xid, entry_id);

-- One row per sealed entry; no foreign key, so that an entry deleted behind the triggers' back leaves
-- its seal to show it. `xid` repeats the entry's, so that the sealer resumes even then.
CREATE TABLE audit_seals (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    entry_id  bigint NOT NULL UNIQUE,
    xid       xid8 NOT NULL,
    mac       bytea NOT NULL CHECK (length(mac) = 32)
);

CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
