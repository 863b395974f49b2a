-- Depth of use (应用深度): the scenes and beneficiaries operators record, beside the verifications that measure them.

-- How many service scenes an item has in a district (the denominator of identity depth).
CREATE TABLE depth_scenes (
    item_code   text NOT NULL REFERENCES catalog_items,
    district    text NOT NULL,
    scenes      integer NOT NULL CHECK (scenes >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_code, district)
);

-- How many people a disbursement item paid in a year, and how many of them through the card's account.
CREATE TABLE depth_beneficiaries (
    item_code       text NOT NULL REFERENCES catalog_items,
    year            integer NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    beneficiaries   integer NOT NULL CHECK (beneficiaries >= 0),
    paid_by_card    integer NOT NULL CHECK (paid_by_card >= 0 AND paid_by_card <= beneficiaries),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_code, year)
);

-- The depth report reads one item's verifications over a 30-day window.
CREATE INDEX verifications_item_time ON verifications (item_code, verified_at);
