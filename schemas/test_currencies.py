from schemas.currencies import ISO_4217, is_iso_4217


def test_the_list_is_list_one_of_iso_4217():
    assert len(ISO_4217) == 178
    assert all(len(c) == 3 and c.isascii() and c.isupper() for c in ISO_4217)
    for code in ("EUR", "USD", "JPY", "CHF", "XCG", "ZWG", "SLE", "VED", "XAU", "XXX"):
        assert is_iso_4217(code), code
    for gone in ("HRK", "SLL", "ZWL", "VEF", "MRO", "STD", "BYR", "CUC", "ZZZ", "NAN", "eur"):
        assert not is_iso_4217(gone), gone
