-- Issue 13 (outbound): the traffic source's own click id (the link's external_click_param, kept on the
-- click as Event.external_click_id) of the attributed click, for the S2S postback's {external_id}.
-- '' when the anchor touch is not a click or the click carried none.
ALTER TABLE conversions
    ADD COLUMN IF NOT EXISTS attributed_external_click_id String DEFAULT ''
