-- Merchants' functions (which kinds of catalog use they take part in) and their terminals with their places.

-- Existing merchants verified identity only until now; payment and disbursement are opt-in.
ALTER TABLE merchants
    ADD COLUMN functions text[] NOT NULL DEFAULT ARRAY['identity'],
    ADD CONSTRAINT merchants_functions_known
        CHECK (cardinality(functions) > 0 AND functions <@ ARRAY['identity', 'disbursement', 'payment']);

-- `terminal_ref` is the terminal's own id across merchants and the owner of its client key;
-- `terminal_id` is the merchant's name for it (what terminals and holders see), unique per merchant.
CREATE TABLE terminals (
    terminal_ref    text PRIMARY KEY,
    merchant_id     text NOT NULL REFERENCES merchants,
    terminal_id     text NOT NULL,
    place_name      text NOT NULL,
    place_address   text NOT NULL,
    region          text NOT NULL,                -- district or region code (wulong, cq, ...)
    lat             double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon             double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, terminal_id)
);
CREATE INDEX terminals_region ON terminals (region) WHERE status = 'active';
