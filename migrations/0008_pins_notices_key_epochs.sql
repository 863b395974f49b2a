-- PIN changes and resets, notices to the holder, card-reference key epochs, minted client key ids.

-- Key ids the service mints carry a keyed tag, so that made-up ones are refused without a look-up. Keys
-- registered before that (and partner keys, whose ids are `<issuer>:<kid>`) are not minted.
ALTER TABLE client_keys ADD COLUMN minted boolean NOT NULL DEFAULT false;
CREATE INDEX client_keys_not_minted ON client_keys (key_id) WHERE NOT minted;
