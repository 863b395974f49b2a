-- One request-signing key per audience (partners, the 渝快办 platform, the bank, merchants' callback servers),
-- so that a signature one of them receives is good nowhere else. The key made before is the partners' key:
-- partners registered it already.
ALTER TABLE issuer_request_keys
    ADD COLUMN audience text NOT NULL DEFAULT 'federation'
        CHECK (audience IN ('federation', 'yukuai', 'bank', 'callback'));
ALTER TABLE issuer_request_keys ALTER COLUMN audience DROP DEFAULT;
DROP INDEX issuer_request_keys_one_active;
CREATE UNIQUE INDEX issuer_request_keys_one_active ON issuer_request_keys (audience) WHERE status = 'active';

-- The key id a partner signs with ('<issuer>:<kid>'), kept on the trust list itself: it checks the partner's
-- signed answers with it, and lists it, without reading the clients' table.
ALTER TABLE partners ADD COLUMN key_id text;
UPDATE partners p SET key_id = k.key_id FROM client_keys k WHERE k.owner_id = p.partner_id AND k.kind = 'partner';
ALTER TABLE partners ALTER COLUMN key_id SET NOT NULL;
