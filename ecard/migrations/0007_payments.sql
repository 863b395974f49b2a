-- Payment pull-ups (协约商户 拉起账单): bills, payment attempts, PIN guards, a double-entry ledger,
-- refunds and the transactional outbox of merchant callbacks.

CREATE TABLE bills (
    bill_id         text PRIMARY KEY,
    merchant_id     text NOT NULL REFERENCES merchants,
    out_bill_no     text NOT NULL,
    -- SHA-256 of the creation request's canonical body: the same number with another body is a conflict
    body_hash       bytea NOT NULL,
    item_code       text NOT NULL REFERENCES catalog_items,
    amount_fen      bigint NOT NULL CHECK (amount_fen > 0),
    description     text NOT NULL,
    notify_url      text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'refunded', 'closed')),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    paid_at         timestamptz,
    closed_at       timestamptz,
    card_id         text REFERENCES cards,
    transaction_id  text,
    refunded_fen    bigint NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0 AND refunded_fen <= amount_fen),
    UNIQUE (merchant_id, out_bill_no),
    CHECK ((status IN ('paid', 'refunded')) = (paid_at IS NOT NULL AND card_id IS NOT NULL)),
    CHECK (status <> 'refunded' OR refunded_fen = amount_fen)
);
CREATE INDEX bills_merchant_paid ON bills (merchant_id, paid_at);

-- One row per attempt to move a bill's money; claimed (and committed) before the bank is called.
CREATE TABLE payment_attempts (
    transfer_id     text PRIMARY KEY,
    bill_id         text NOT NULL REFERENCES bills,
    card_id         text NOT NULL REFERENCES cards,
    device_id       text NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen > 0),
    state           text NOT NULL CHECK (state IN ('claimed', 'succeeded', 'failed', 'reversed')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
-- At most one attempt per bill is in flight or done: the second concurrent pay cannot even claim.
CREATE UNIQUE INDEX payment_attempts_one_live ON payment_attempts (bill_id) WHERE state IN ('claimed', 'succeeded');
CREATE INDEX payment_attempts_claimed ON payment_attempts (created_at) WHERE state = 'claimed';

-- Wrong PINs per card: counted before each check, so that concurrent guesses cannot exceed the limit.
CREATE TABLE pin_guards (
    card_id         text PRIMARY KEY REFERENCES cards,
    failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until    timestamptz
);

CREATE TABLE refunds (
    refund_id       text PRIMARY KEY,
    bill_id         text NOT NULL REFERENCES bills,
    merchant_id     text NOT NULL REFERENCES merchants,
    out_refund_no   text NOT NULL,
    body_hash       bytea NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen > 0),
    reason          text NOT NULL,
    card_id         text NOT NULL REFERENCES cards,
    state           text NOT NULL CHECK (state IN ('processing', 'succeeded')),
    created_at      timestamptz NOT NULL,
    refunded_at     timestamptz,
    UNIQUE (merchant_id, out_refund_no)
);
CREATE INDEX refunds_processing ON refunds (created_at) WHERE state = 'processing';
CREATE INDEX refunds_merchant_time ON refunds (merchant_id, created_at);

-- The ledger. Accounts are named: card:<card_id> (the card's bank account, mirrored), clearing (money the bank
-- has debited that no bill has taken yet), merchant:<merchant_id> (what is payable to the merchant), refunds
-- (refunds on their way back to the card).
CREATE TABLE ledger_transfers (
    transfer_id      text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('debit', 'settle', 'reverse', 'refund', 'credit')),
    bill_id          text NOT NULL REFERENCES bills,
    merchant_id      text NOT NULL REFERENCES merchants,
    refund_id        text REFERENCES refunds,
    -- the bank's transfer id, for the transfers that mirror a movement at the bank (debit, reverse, credit)
    bank_transfer_id text,
    amount_fen       bigint NOT NULL CHECK (amount_fen > 0),
    booked_at        timestamptz NOT NULL,
    UNIQUE (bank_transfer_id, kind)
);
CREATE INDEX ledger_transfers_bill ON ledger_transfers (bill_id);
CREATE INDEX ledger_transfers_merchant_time ON ledger_transfers (merchant_id, booked_at);

CREATE TABLE ledger_entries (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id     text NOT NULL REFERENCES ledger_transfers,
    account         text NOT NULL,
    amount_fen      bigint NOT NULL CHECK (amount_fen <> 0)
);
CREATE INDEX ledger_entries_transfer ON ledger_entries (transfer_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account);

CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER ledger_transfers_immutable BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();

-- Checked at commit, once every entry of the transaction is in: each transfer sums to zero over at least two entries.
CREATE FUNCTION ledger_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
    legs integer;
BEGIN
    SELECT COALESCE(sum(amount_fen), 0), count(*) INTO total, legs
        FROM ledger_entries WHERE transfer_id = NEW.transfer_id;
    IF total <> 0 OR legs < 2 THEN
        RAISE EXCEPTION 'ledger transfer % is unbalanced (sum %, % entries)', NEW.transfer_id, total, legs
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_balanced();

-- The transactional outbox: an event is written in the transaction that changed the bill.
CREATE TABLE outbox_events (
    event_id        text PRIMARY KEY,
    bill_id         text NOT NULL REFERENCES bills,
    merchant_id     text NOT NULL REFERENCES merchants,
    event           text NOT NULL CHECK (event IN ('bill.paid', 'bill.refunded', 'bill.closed')),
    notify_url      text NOT NULL,
    body            bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    gave_up_at      timestamptz
);
CREATE INDEX outbox_due ON outbox_events (next_attempt_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX outbox_bill ON outbox_events (bill_id);

CREATE TABLE notification_attempts (
    attempt_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        text NOT NULL REFERENCES outbox_events,
    attempted_at    timestamptz NOT NULL,
    http_status     integer,
    error           text
);
CREATE INDEX notification_attempts_event ON notification_attempts (event_id);
