-- Family accounts (亲情服务, issue 15): a holder (the guardian) may show a family member's card from the guardian's
-- own device. Links are never deleted: an ended link stays, so that its codes are refused by name and both sides
-- can still see it.
CREATE TABLE family_links (
    link_id          text PRIMARY KEY,
    guardian_card_id text NOT NULL REFERENCES cards,
    member_card_id   text NOT NULL REFERENCES cards,
    relation         text NOT NULL CHECK (relation IN ('parent', 'child', 'spouse', 'other')),
    status           text NOT NULL CHECK (status IN ('active', 'pending_consent', 'ended')),
    -- active without consent because the member was under 16: consent is due once the member turns 16
    minor            boolean NOT NULL,
    created_at       timestamptz NOT NULL,
    consented_at     timestamptz,
    consented_by     text REFERENCES channels,
    ended_at         timestamptz,
    ended_by         text CHECK (ended_by IN ('guardian', 'member')),
    CHECK (guardian_card_id <> member_card_id),
    CHECK ((status = 'ended') = (ended_at IS NOT NULL))
);
-- one live link per guardian and member; the limits count a guardian's live links
CREATE UNIQUE INDEX family_links_live ON family_links (guardian_card_id, member_card_id) WHERE status <> 'ended';
CREATE INDEX family_links_guardian ON family_links (guardian_card_id, created_at DESC);
CREATE INDEX family_links_member ON family_links (member_card_id, created_at DESC);

-- A verification of a code a guardian showed: the guardian's relation to the holder (NULL: the holder's own code).
ALTER TABLE verifications ADD COLUMN family_relation text;
