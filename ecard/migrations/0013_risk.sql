-- Risk events (issue 14): a public id, a severity, what was done about the event, and an operator's resolution.
ALTER TABLE risk_events
    ADD COLUMN public_id   text,
    ADD COLUMN severity    text NOT NULL DEFAULT 'medium' CHECK (severity IN ('low', 'medium', 'high')),
    ADD COLUMN status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    ADD COLUMN action      text NOT NULL DEFAULT 'none' CHECK (action IN ('none', 'suspended', 'payments_locked')),
    ADD COLUMN outcome     text CHECK (outcome IN ('confirmed', 'false_positive')),
    ADD COLUMN note        text,
    ADD COLUMN resolved_by text,
    ADD COLUMN resolved_at timestamptz;
-- events raised before this migration get an id of the same form (hex digits are Crockford base32 digits too)
UPDATE risk_events SET public_id = 'rsk_' || lpad(to_hex(event_id), 26, '0');
ALTER TABLE risk_events ALTER COLUMN public_id SET NOT NULL;
CREATE UNIQUE INDEX risk_events_public_id ON risk_events (public_id);
CREATE INDEX risk_events_kind ON risk_events (kind, raised_at DESC);
CREATE INDEX risk_events_open ON risk_events (raised_at DESC) WHERE status = 'open';
