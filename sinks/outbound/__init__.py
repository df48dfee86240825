"""Outbound delivery cores (issue 13): what to send, how to sign it, when to retry, where it may go.

Pure modules (no network, no clock, no randomness read inside; time and random sources are passed in):

- ``schedule``: retry schedule with jitter, attempt outcome classification, the delivery state machine
  and the endpoint circuit (disabled after repeated failures or ``410 Gone``);
- ``events``: which goal webhook a conversion row calls for (tracked / updated / reversed / nothing),
  the per-conversion digest that decides it, and the webhook body and id;
- ``templates``: rendering traffic-source S2S postbacks and deciding which fire.
- ``planner``: a batch's conversion rows and stored digests -> the digests to store and the goal
  webhooks due (committed with the batch by the runtime).

The one I/O module, ``sender``, makes one attempt over HTTP (aiohttp): the SSRF guard again at delivery
time, connecting only to checked addresses, no redirects, a total timeout, per-host concurrency and rate
limits; its answer is classified by ``schedule.classify``.

Signing (``schemas/outbound/signing.py``), the SSRF guard (``schemas/outbound/ssrf.py``) and the
save-time parsing of postback templates (``schemas/outbound/postbacks.py``) live in ``schemas/``: the
edge needs them when goals and links are saved, and ``ingest/`` may not import ``sinks/``.
"""
