"""Outbound delivery cores (issue 13): what to send, how to sign it, when to retry, where it may go.

Pure modules (no network, no clock, no randomness read inside; time and random sources are passed in):

- ``signing``: Standard Webhooks headers, ``whsec_`` secrets, rotation, the receiver's verifier;
- ``schedule``: retry schedule with jitter, attempt outcome classification, the delivery state machine
  and the endpoint circuit (disabled after repeated failures or ``410 Gone``);
- ``ssrf``: the destination guard for URLs (save time) and resolved addresses (delivery time);
- ``events``: which goal webhook a conversion row calls for (tracked / updated / reversed / nothing),
  the per-conversion digest that decides it, and the webhook body and id;
- ``templates``: traffic-source S2S postback templates (macros, status filter and rename map).
"""
