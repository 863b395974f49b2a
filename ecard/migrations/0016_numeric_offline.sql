-- Issue 15 (numeric code, offline taps): each device's TOTP secret, and what each offline tap was answered.

-- One RFC 6238 secret per device, made at its first numeric code; sealed with the key-wrap key, bound to the device.
CREATE TABLE device_totp_secrets (
    device_id     text PRIMARY KEY REFERENCES devices,
    secret_sealed bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- An offline tap's answer, kept so that an upload sent again gets the same answers (idempotent per tap_id of a
-- terminal). Append-only: a tap is judged once.
CREATE TABLE offline_taps (
    terminal_key    text NOT NULL,             -- the terminal client (its key's owner) that uploaded the tap
    tap_id          text NOT NULL,
    result          text NOT NULL,
    verification_id text,                      -- the verification an accepted tap became (verifications is partitioned)
    tapped_at       timestamptz NOT NULL,
    uploaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_key, tap_id)
);

CREATE TRIGGER offline_taps_append_only BEFORE UPDATE OR DELETE ON offline_taps
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
