-- Catalog versions: every change to catalog_items is one numbered version saying who, when and what.

CREATE TABLE catalog_versions (
    version     integer PRIMARY KEY CHECK (version > 0),
    created_at  timestamptz NOT NULL,
    -- an operator id, 'seed' or 'import:<file name>': never a person's name or ID number
    actor       text NOT NULL
);

-- One row per item a version touched: {"<field>": {"old": ..., "new": ...}}, old null for a new item.
-- No foreign key to catalog_items: the history says what was, whatever the item is now.
CREATE TABLE catalog_changes (
    version     integer NOT NULL REFERENCES catalog_versions ON DELETE CASCADE,
    item_code   text NOT NULL,
    fields      jsonb NOT NULL,
    PRIMARY KEY (version, item_code)
);
CREATE INDEX catalog_changes_item ON catalog_changes (item_code, version);

-- What the service refuses at its edge, the database refuses too.
ALTER TABLE catalog_items
    ADD CONSTRAINT catalog_items_functions_given CHECK (cardinality(functions) > 0),
    ADD CONSTRAINT catalog_items_card_modes_given CHECK (cardinality(card_modes) > 0),
    ADD CONSTRAINT catalog_items_regions_given CHECK (cardinality(regions) > 0),
    ADD CONSTRAINT catalog_items_dates_in_order CHECK (effective_to IS NULL OR effective_to >= effective_from);

-- A database seeded before versions existed: its items as they stand are version 1, made by the seed.
INSERT INTO catalog_versions (version, created_at, actor)
SELECT 1, now(), 'seed' WHERE EXISTS (SELECT FROM catalog_items);

INSERT INTO catalog_changes (version, item_code, fields)
SELECT 1, item_code, jsonb_build_object(
    'name', jsonb_build_object('old', NULL, 'new', to_jsonb(name)),
    'domain', jsonb_build_object('old', NULL, 'new', to_jsonb(domain)),
    'lead_department', jsonb_build_object('old', NULL, 'new', to_jsonb(lead_department)),
    'functions', jsonb_build_object('old', NULL, 'new', to_jsonb(functions)),
    'card_modes', jsonb_build_object('old', NULL, 'new', to_jsonb(card_modes)),
    'regions', jsonb_build_object('old', NULL, 'new', to_jsonb(regions)),
    'discloses', jsonb_build_object('old', NULL, 'new', to_jsonb(discloses)),
    'effective_from', jsonb_build_object('old', NULL, 'new', to_jsonb(effective_from)),
    'effective_to', jsonb_build_object('old', NULL, 'new', to_jsonb(effective_to)),
    'depth_targets', jsonb_build_object('old', NULL, 'new', depth_targets),
    'description', jsonb_build_object('old', NULL, 'new', to_jsonb(description))
) - CASE WHEN effective_to IS NULL THEN 'effective_to' ELSE '' END  -- like the service: only what differs
FROM catalog_items;
