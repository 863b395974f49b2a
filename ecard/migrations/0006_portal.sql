-- Portal login (OpenID Connect provider): registered portals, the id_token signing keys, and each holder's logins.

-- A portal is an OpenID Connect client that authenticates with private_key_jwt against `jwks`.
CREATE TABLE portals (
    client_id      text PRIMARY KEY,
    name           text NOT NULL,
    redirect_uris  text[] NOT NULL CHECK (cardinality(redirect_uris) > 0),
    jwks           jsonb NOT NULL,
    claims         text[] NOT NULL CHECK (claims <@ ARRAY['name', 'id_number', 'region', 'card_status']),
    allowed_items  text[] NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The provider's id_token signing keys (ES256); the private part sealed with the key-wrap key.
CREATE TABLE portal_signing_keys (
    kid          text PRIMARY KEY,
    public_jwk   jsonb NOT NULL,
    private_key  bytea NOT NULL,
    status       text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);
CREATE UNIQUE INDEX portal_signing_keys_one_active ON portal_signing_keys ((status)) WHERE status = 'active';

-- Append-only: every approved or refused login, for the holder's history.
CREATE TABLE portal_logins (
    login_id    text PRIMARY KEY,
    card_id     text NOT NULL REFERENCES cards,
    client_id   text NOT NULL REFERENCES portals,
    claims      text[] NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('approved', 'denied')),
    cross_device boolean NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX portal_logins_card ON portal_logins (card_id, at DESC);

CREATE TRIGGER portal_logins_append_only BEFORE UPDATE OR DELETE ON portal_logins
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
