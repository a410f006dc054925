"""XNAT REST client: sessions, listings, import service, prearchive, archive, resources."""
