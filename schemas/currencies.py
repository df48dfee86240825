"""ISO 4217 currency codes in use: List One of the standard ("current currency & funds"), as published
by its maintenance agency on 2026-01-01 (178 codes: national currencies, the fund codes such as ``BOV``
and ``CLF``, precious metals ``XAU``..., and ``XTS``/``XXX``). Withdrawn codes (``HRK``, ``SLL``,
``ZWL``, ``ANG``, ...) are not in it.

A static set rather than a dependency (decision in docs/decisions.md): the list changes a few times a
year, the well-kept packages that carry it weigh megabytes (``pycountry``, 23 MB installed) or parse XML
at import, and a code added by an amendment is a one-line change here, checked by ``test_currencies``.
"""

from __future__ import annotations

PUBLISHED = "2026-01-01"

ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN
    BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK
    DJF DKK DOP DZD
    EGP ERN ETB EUR
    FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK
    JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN
    NAD NGN NIO NOK NPR NZD
    OMR
    PAB PEN PGK PHP PKR PLN PYG
    QAR
    RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV
    WST
    XAD XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX
    YER
    ZAR ZMW ZWG    """.split()
)


def is_iso_4217(code: str) -> bool:
    """Whether ``code`` (upper case, as stored) is an active ISO 4217 code."""
    return code in ISO_4217
