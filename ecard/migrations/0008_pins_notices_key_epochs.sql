-- PIN changes and resets, notices to the holder, card-reference key epochs, minted client key ids.

-- 0: an Argon2 hash of the bare PIN (before PINs were peppered); 1: of the PIN's HMAC under the server's pin key.
-- A hash of version 0 is re-made as version 1 at the next correct PIN.
ALTER TABLE devices ADD COLUMN pin_pepper smallint NOT NULL DEFAULT 0 CHECK (pin_pepper IN (0, 1));

-- A channel's fresh real-name check lets the device set a new PIN without the old one: a short-lived,
-- single-use grant. Only the SHA-256 of the grant is kept.
CREATE TABLE pin_resets (
    token_hash  bytea PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices,
    channel_id  text NOT NULL REFERENCES channels,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX pin_resets_open ON pin_resets (device_id) WHERE used_at IS NULL;

-- What the holder is told about the card (a PIN changed, a reset asked for, ...): never personal data in `detail`.
CREATE TABLE notices (
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    notice_id   text PRIMARY KEY,
    card_id     text NOT NULL REFERENCES cards,
    kind        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL
);
CREATE INDEX notices_card ON notices (card_id, created_at DESC, seq DESC);

-- The epochs of the card-reference AEAD key (each epoch's key is derived from the master key). No row: epoch 0.
CREATE TABLE card_ref_epochs (
    epoch       integer PRIMARY KEY CHECK (epoch BETWEEN 1 AND 65535),
    started_at  timestamptz NOT NULL,
    started_by  text NOT NULL
);

-- Key ids the service mints carry a keyed tag, so that made-up ones are refused without a look-up. Keys
-- registered before that (and partner keys, whose ids are `<issuer>:<kid>`) are not minted.
ALTER TABLE client_keys ADD COLUMN minted boolean NOT NULL DEFAULT false;
CREATE INDEX client_keys_not_minted ON client_keys (key_id) WHERE NOT minted;
