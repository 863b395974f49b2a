-- Payments without a database transaction held across an HTTP call: whoever works on a payment attempt, a refund
-- or a callback (its own request, recovery, a deliverer) holds it by a lease that it commits before calling out.
-- `leased_until` says until when; `lease_token` names the holder, so that one whose lease ran out (and was taken
-- over) cannot book what it did.

ALTER TABLE payment_attempts ADD COLUMN leased_until timestamptz, ADD COLUMN lease_token text;
-- attempts claimed before leases existed: their requests had a minute, as the recovery grace period then said
UPDATE payment_attempts SET leased_until = created_at + interval '60 seconds' WHERE state = 'claimed';

ALTER TABLE refunds ADD COLUMN leased_until timestamptz, ADD COLUMN lease_token text;
UPDATE refunds SET leased_until = created_at + interval '60 seconds' WHERE state = 'processing';

ALTER TABLE outbox_events ADD COLUMN leased_until timestamptz, ADD COLUMN lease_token text;
-- due events by merchant (each merchant gets its own few deliveries at a time), and the ones being delivered now
CREATE INDEX outbox_due_by_merchant ON outbox_events (merchant_id, next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX outbox_leased ON outbox_events (merchant_id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL AND leased_until IS NOT NULL;
