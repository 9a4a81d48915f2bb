-- A code presented again after its redemption is marked replayed: the grant its first use is
-- still making is then refused (RFC 6749 §4.1.2), now that a code is spent in one write and its
-- grant stored in another (ADR 0020).
ALTER TABLE oidc_codes ADD COLUMN replayed_at BIGINT;
