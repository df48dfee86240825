"""Pure outbound cores shared by the edge (save time) and the delivery engine (issue 13): Standard
Webhooks signing and secrets (``signing``), the SSRF guard (``ssrf``), link postback settings
(``postbacks``) and the ``TRACKPIPE_OUTBOUND__*`` settings (``config``). No I/O."""
