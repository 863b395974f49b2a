-- Core: operators, machine clients, cardholders, cards, devices, catalog, issuer keys, verifications, risk, audit.

CREATE TABLE operators (
    operator_id     text PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    totp_secret     bytea NOT NULL,            -- sealed with the key-wrap key
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog_items (
    item_code       text PRIMARY KEY,
    name            text NOT NULL,
    domain          text NOT NULL,
    lead_department text NOT NULL,
    functions       text[] NOT NULL,
    card_modes      text[] NOT NULL,
    regions         text[] NOT NULL,
    discloses       text[] NOT NULL,
    effective_from  date NOT NULL,
    effective_to    date,
    depth_targets   jsonb NOT NULL DEFAULT '{}'::jsonb,
    description     text NOT NULL DEFAULT '',
    CHECK (functions <@ ARRAY['identity', 'disbursement', 'payment']),
    CHECK (card_modes <@ ARRAY['physical', 'electronic']),
    CHECK (discloses <@ ARRAY['pseudonym', 'name_masked', 'name', 'id_number'])
);

CREATE TABLE channels (
    channel_id  text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchants (
    merchant_id text PRIMARY KEY,
    name        text NOT NULL,
    region      text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchant_items (
    merchant_id text NOT NULL REFERENCES merchants,
    item_code   text NOT NULL REFERENCES catalog_items,
    PRIMARY KEY (merchant_id, item_code)
);

CREATE TABLE client_keys (
    key_id      text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('device', 'channel', 'merchant', 'terminal', 'partner')),
    owner_id    text NOT NULL,
    parent_id   text,
    public_jwk  jsonb NOT NULL,
    alg         text NOT NULL CHECK (alg IN ('ed25519', 'ecdsa-p256-sha256')),
    thumbprint  text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_keys_owner ON client_keys (owner_id);
CREATE INDEX client_keys_parent ON client_keys (parent_id) WHERE parent_id IS NOT NULL;

-- Names and ID numbers are sealed (AES-256-GCM, bound to the cardholder id); `id_index` is a keyed
-- blind index (HMAC-SHA-256) so that a person can be found without decrypting every row.
CREATE TABLE cardholders (
    cardholder_id text PRIMARY KEY,
    name_sealed   bytea NOT NULL,
    id_sealed     bytea NOT NULL,
    id_index      bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
    card_id        text PRIMARY KEY,
    cardholder_id  text NOT NULL REFERENCES cardholders,
    card_serial    text NOT NULL UNIQUE,
    region         text NOT NULL,                -- the issuing region (cq, sc, ...): a property of the card
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'cancelled')),
    status_reason  text NOT NULL DEFAULT '',
    status_at      timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_holder ON cards (cardholder_id);

CREATE TABLE card_status_changes (
    change_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_id     text NOT NULL REFERENCES cards,
    status      text NOT NULL,
    reason      text NOT NULL,
    actor       text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    card_id     text NOT NULL REFERENCES cards,
    channel_id  text NOT NULL REFERENCES channels,
    key_id      text NOT NULL REFERENCES client_keys,
    name        text NOT NULL,
    pin_hash    text,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_card ON devices (card_id);

CREATE TABLE issuer_keys (
    kid          bytea PRIMARY KEY CHECK (length(kid) = 8),
    alg          text NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
    public_key   bytea NOT NULL,
    private_key  bytea,                      -- sealed; NULL when the private key comes from the environment
    status       text NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
    not_before   timestamptz NOT NULL DEFAULT now(),
    not_after    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX issuer_keys_one_active ON issuer_keys ((status)) WHERE status = 'active';

-- Append-only: the service inserts and never updates or deletes a verification.
CREATE TABLE verifications (
    verification_id text PRIMARY KEY,
    card_id         text NOT NULL REFERENCES cards,
    merchant_id     text NOT NULL REFERENCES merchants,
    item_code       text NOT NULL REFERENCES catalog_items,
    terminal_id     text,
    place           jsonb,
    disclosed       text[] NOT NULL,
    cti             bytea NOT NULL UNIQUE,
    verified_at     timestamptz NOT NULL
);
CREATE INDEX verifications_card ON verifications (card_id, verified_at DESC);
CREATE INDEX verifications_merchant ON verifications (merchant_id, verified_at DESC);

CREATE TABLE risk_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    card_id     text,
    merchant_id text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    raised_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX risk_events_card ON risk_events (card_id, raised_at DESC);

-- Tamper-evident: each row carries the hash of the previous one.
CREATE TABLE audit_log (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT now(),
    prev_hash   bytea NOT NULL,
    entry_hash  bytea NOT NULL
);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;

CREATE TRIGGER verifications_append_only BEFORE UPDATE OR DELETE ON verifications
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
