-- PIN changes and resets, notices to the holder, card-reference key epochs, minted client key ids.

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
