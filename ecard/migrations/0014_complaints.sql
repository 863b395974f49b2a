-- Complaints (投诉, regulation art. 20): from the holder's device (tied to the card) or from the public
-- (with a contact). The text, the contact and every reply are sealed with the service's PII key (AES-GCM,
-- bound to the row's id): the database never holds them in clear. The tracking code is kept only as its
-- SHA-256; it is shown to the complainant once.
CREATE TABLE complaints (
    complaint_id    text PRIMARY KEY,
    tracking_hash   bytea NOT NULL UNIQUE CHECK (length(tracking_hash) = 32),
    channel         text NOT NULL CHECK (channel IN ('device', 'public')),
    card_id         text REFERENCES cards,
    device_id       text,
    category        text NOT NULL
        CHECK (category IN ('card_refused', 'data_misuse', 'wrong_charge', 'service', 'other')),
    text_sealed     bytea NOT NULL,
    contact_sealed  bytea,
    merchant_id     text REFERENCES merchants,
    -- checked to be the holder's when filed; no foreign key, so that verifications and bills may be partitioned
    verification_id text,
    bill_id         text,
    status          text NOT NULL DEFAULT 'received'
        CHECK (status IN ('received', 'accepted', 'resolved', 'rejected')),
    received_at     timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    CHECK ((channel = 'device') = (card_id IS NOT NULL AND device_id IS NOT NULL)),
    CHECK (channel = 'device' OR contact_sealed IS NOT NULL)
);
CREATE INDEX complaints_due ON complaints (due_at) WHERE status IN ('received', 'accepted');
CREATE INDEX complaints_status ON complaints (status, due_at);
CREATE INDEX complaints_card ON complaints (card_id, received_at DESC) WHERE card_id IS NOT NULL;

CREATE TABLE complaint_replies (
    reply_id     text PRIMARY KEY,
    complaint_id text NOT NULL REFERENCES complaints,
    operator_id  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('accepted', 'resolved', 'rejected')),
    text_sealed  bytea NOT NULL,
    replied_at   timestamptz NOT NULL
);
CREATE INDEX complaint_replies_of ON complaint_replies (complaint_id, replied_at);

CREATE TRIGGER complaint_replies_append_only BEFORE UPDATE OR DELETE ON complaint_replies
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
