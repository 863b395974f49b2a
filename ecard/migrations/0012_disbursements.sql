-- Disbursement (资金发放, issue 12): batches of payouts a paying department uploads, their validated rows, the
-- operators' approvals, and the ledger's and outbox's rows for batches beside those for bills.

CREATE TABLE disbursement_batches (
    batch_id         text PRIMARY KEY,
    merchant_id      text NOT NULL REFERENCES merchants,
    out_batch_no     text NOT NULL,
    -- SHA-256 over the batch's fields and every row as parsed: the same number with another body is a conflict
    body_hash        bytea NOT NULL,
    item_code        text NOT NULL REFERENCES catalog_items,
    description      text NOT NULL,
    notify_url       text NOT NULL,
    status           text NOT NULL CHECK (status IN (
        'validating', 'awaiting_approval', 'approved', 'paying', 'completed', 'rejected', 'failed', 'expired')),
    rows_total       integer NOT NULL DEFAULT 0 CHECK (rows_total >= 0),
    -- the total of the ready rows: what is reserved, and what the approval threshold is compared with
    amount_total_fen bigint NOT NULL DEFAULT 0 CHECK (amount_total_fen >= 0),
    paid_fen         bigint NOT NULL DEFAULT 0 CHECK (paid_fen >= 0 AND paid_fen <= amount_total_fen),
    approvals_needed smallint NOT NULL DEFAULT 1 CHECK (approvals_needed IN (1, 2)),
    first_approver   text,
    second_approver  text CHECK (second_approver IS NULL OR second_approver <> first_approver),
    decided_reason   text,
    failure_code     text,
    reservation_id   text UNIQUE,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    approved_at      timestamptz,
    completed_at     timestamptz,
    -- whoever pays the batch (a payer loop of some worker) holds it by this lease, committed before the bank is called
    leased_until     timestamptz,
    lease_token      text,
    UNIQUE (merchant_id, out_batch_no)
);
CREATE INDEX disbursement_batches_work ON disbursement_batches (leased_until) WHERE status IN ('approved', 'paying');
CREATE INDEX disbursement_batches_waiting ON disbursement_batches (expires_at) WHERE status = 'awaiting_approval';
CREATE INDEX disbursement_batches_item ON disbursement_batches (item_code, completed_at) WHERE status = 'completed';

CREATE TABLE disbursement_rows (
    batch_id      text NOT NULL REFERENCES disbursement_batches,
    row_no        integer NOT NULL CHECK (row_no > 0),
    out_row_no    text NOT NULL,
    -- the blind index of the row's ID number (never the number): distinct beneficiaries, duplicates
    person_index  bytea NOT NULL,
    card_id       text REFERENCES cards,
    amount_fen    bigint NOT NULL CHECK (amount_fen >= 0),
    memo          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('ready', 'rejected', 'paid', 'failed')),
    code          text,
    paid_at       timestamptz,
    PRIMARY KEY (batch_id, row_no),
    CHECK (status NOT IN ('ready', 'paid') OR (card_id IS NOT NULL AND amount_fen > 0)),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
    CHECK ((status IN ('rejected', 'failed')) = (code IS NOT NULL))
);
CREATE INDEX disbursement_rows_ready ON disbursement_rows (batch_id, row_no) WHERE status = 'ready';
CREATE INDEX disbursement_rows_card ON disbursement_rows (card_id, paid_at) WHERE status = 'paid';

-- The ledger holds batches' movements beside bills': a payer's funding account reserved, cards credited from the
-- reservation, the rest released (accounts funding:<merchant_id>, reserved:<batch_id>, card:<card_id>).
ALTER TABLE ledger_transfers ALTER COLUMN bill_id DROP NOT NULL;
ALTER TABLE ledger_transfers ADD COLUMN batch_id text REFERENCES disbursement_batches;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_kind_check;
ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_kind_check
    CHECK (kind IN ('debit', 'settle', 'reverse', 'refund', 'credit', 'reserve', 'disburse', 'release'));
ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_one_subject CHECK ((bill_id IS NULL) <> (batch_id IS NULL));
CREATE INDEX ledger_transfers_batch ON ledger_transfers (batch_id) WHERE batch_id IS NOT NULL;

-- The outbox carries batch events too.
ALTER TABLE outbox_events ALTER COLUMN bill_id DROP NOT NULL;
ALTER TABLE outbox_events ADD COLUMN batch_id text REFERENCES disbursement_batches;
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_event_check;
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_event_check
    CHECK (event IN ('bill.paid', 'bill.refunded', 'bill.closed', 'batch.completed', 'batch.failed'));
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_one_subject CHECK ((bill_id IS NULL) <> (batch_id IS NULL));
