-- Federation: this issuer's request-signing key, partner issuers, verifications across issuers, 渝快码 links.

-- The key this issuer signs its own outgoing requests with (to partners, the bank, merchants' callbacks).
CREATE TABLE issuer_request_keys (
    kid          text PRIMARY KEY,                 -- RFC 7638 thumbprint of the public JWK
    public_jwk   jsonb NOT NULL,
    private_key  bytea NOT NULL,                   -- sealed with the key-wrap key
    status       text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX issuer_request_keys_one_active ON issuer_request_keys ((status)) WHERE status = 'active';

-- The trust list. A partner's request key is a client key (kind 'partner', key_id '<issuer>:<kid>');
-- its code keys are fetched from its GET /v1/issuer/keys and kept here with the time of the fetch.
CREATE TABLE partners (
    partner_id      text PRIMARY KEY,
    issuer          text NOT NULL UNIQUE CHECK (issuer ~ '^[a-z][a-z0-9-]{0,15}$'),
    name            text NOT NULL,
    base_url        text NOT NULL,
    region          text NOT NULL,                 -- whose items the joint list is drawn against
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    code_keys       jsonb NOT NULL DEFAULT '[]'::jsonb,
    keys_fetched_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A verification this issuer decided for a partner's merchant: the merchant is the partner's, not ours.
ALTER TABLE verifications
    DROP CONSTRAINT verifications_merchant_id_fkey,
    ADD COLUMN via_issuer text REFERENCES partners (issuer),
    ADD COLUMN merchant_name text,
    ADD CONSTRAINT verifications_merchant_known CHECK ((via_issuer IS NULL) = (merchant_name IS NULL));

-- Codes of a partner's card checked at our merchants: the partner decided, we keep what our terminal was told.
CREATE TABLE forwarded_verifications (
    verification_id         text PRIMARY KEY,
    issuer                  text NOT NULL REFERENCES partners (issuer),
    remote_verification_id  text NOT NULL,
    merchant_id             text NOT NULL REFERENCES merchants,
    item_code               text NOT NULL REFERENCES catalog_items,
    terminal_id             text,
    place                   jsonb,
    disclosed               text[] NOT NULL,
    verified_at             timestamptz NOT NULL,
    UNIQUE (issuer, remote_verification_id)
);
CREATE INDEX forwarded_verifications_merchant ON forwarded_verifications (merchant_id, verified_at DESC);
CREATE TRIGGER forwarded_verifications_append_only BEFORE UPDATE OR DELETE ON forwarded_verifications
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- The holder's consent to link the card to a 渝快办 account; revoking ends the link, the record stays.
CREATE TABLE yukuai_links (
    link_id          text PRIMARY KEY,
    card_id          text NOT NULL REFERENCES cards,
    account_id       text NOT NULL,
    consent_version  text NOT NULL,
    consented_at     timestamptz NOT NULL,
    revoked_at       timestamptz,
    CHECK (revoked_at IS NULL OR revoked_at >= consented_at)
);
CREATE UNIQUE INDEX yukuai_links_one_per_account ON yukuai_links (account_id) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX yukuai_links_one_per_card ON yukuai_links (card_id) WHERE revoked_at IS NULL;
