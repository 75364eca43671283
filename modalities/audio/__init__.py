"""Audio encoders (music and general sound): MERT, BEATs."""
